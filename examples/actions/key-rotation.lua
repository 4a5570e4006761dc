-- key-rotation: plans the rotation of signing keys, as data for whoever
-- holds them to carry out.
--
-- Payload: {"today": 20100, "max_age_days": 90, "overlap_days": 7,
--           "keys": [{"id": "api-1", "created": 19900, "state": "active"}]}
-- Days are day numbers (days since 1970-01-01), given by the caller: an
-- action reads no clock, so the same request always gets the same plan.
--
-- Every active key older than max_age_days (default 90) gets a successor
-- named after it and today, which is created and promoted today; the old
-- key is retired overlap_days (default 7) later. Other keys are left as
-- they are.

local function day(value, name)
  if math.type(value) ~= "integer" or value < 0 then
    error(name .. " must be a day number", 0)
  end
  return value
end

return function(p)
  local today = day(p.today, "today")
  local max_age = day(p.max_age_days or 90, "max_age_days")
  local overlap = day(p.overlap_days or 7, "overlap_days")
  if json.type(p.keys) ~= "array" then
    error("keys must be an array", 0)
  end
  local steps, unchanged = json.array(), json.array()
  for _, key in ipairs(p.keys) do
    if type(key.id) ~= "string" or key.id == "" then
      error("every key needs an id", 0)
    end
    local age = today - day(key.created, key.id .. ".created")
    if age < 0 then
      error(key.id .. " was created after today", 0)
    end
    if key.state == "active" and age > max_age then
      local successor = key.id .. "-" .. today
      steps[#steps + 1] = {op = "create", key = successor, day = today}
      steps[#steps + 1] = {op = "promote", key = successor, replaces = key.id, day = today}
      steps[#steps + 1] = {op = "retire", key = key.id, day = today + overlap}
    else
      unchanged[#unchanged + 1] = key.id
    end
  end
  return {rotated = #steps // 3, steps = steps, unchanged = unchanged}
end
