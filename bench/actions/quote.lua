-- quote: the Lua action of bench/lua.sh, a small one that builds its
-- result from its payload: three fields read and checked, one table
-- returned. {"item": "sku-7", "qty": 3, "price_cents": 250} ->
-- {"item": "sku-7", "qty": 3, "total_cents": 750}
return function(p)
  local qty, price = p.qty, p.price_cents
  if math.type(qty) ~= "integer" or math.type(price) ~= "integer" then
    error("qty and price_cents must be integers", 0)
  end
  return {item = p.item, qty = qty, total_cents = qty * price}
end
