-- refund: pays back part or all of an order, up to a limit per currency.
--
-- Payload: {"order": "o-1", "currency": "EUR", "paid_cents": 12000,
--           "amount_cents": 2500}
-- Result:  {"order": "o-1", "currency": "EUR", "refund_cents": 2500,
--           "remaining_cents": 9500, "full": false}
--
-- Amounts are integers in cents: no float ever touches money. A refund
-- over the limit, over what was paid, or in an unknown currency fails the
-- request (action_failed) with the reason.

local limits = {EUR = 50000, USD = 50000, GBP = 40000, JPY = 5000000}

local function cents(value, name)
  if math.type(value) ~= "integer" or value < 0 then
    error(name .. " must be a whole number of cents, not " .. tostring(value), 0)
  end
  return value
end

local function money(amount, currency)
  return string.format("%d.%02d %s", amount // 100, amount % 100, currency)
end

return function(p)
  local currency = p.currency
  local limit = limits[currency]
  if not limit then
    error("unknown currency: " .. tostring(currency), 0)
  end
  local paid = cents(p.paid_cents, "paid_cents")
  local amount = cents(p.amount_cents, "amount_cents")
  if amount == 0 then
    error("nothing to refund", 0)
  end
  if amount > paid then
    error("refund of " .. money(amount, currency) .. " exceeds the " .. money(paid, currency) ..
          " paid", 0)
  end
  if amount > limit then
    error("refund of " .. money(amount, currency) .. " is over the limit of " ..
          money(limit, currency), 0)
  end
  return {
    order = p.order,
    currency = currency,
    refund_cents = amount,
    remaining_cents = paid - amount,
    full = amount == paid,
  }
end
