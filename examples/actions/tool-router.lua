-- tool-router: checks an agent's tool call against the tool's schema and
-- names the service that runs it.
--
-- Payload: {"tool": "search", "args": {"query": "lua sandbox"}}
-- Result:  {"tool": "search", "route": "search-svc",
--           "args": {"query": "lua sandbox", "limit": 10}}
--
-- Each argument's rule gives its JSON type (as json.type names them), and
-- optionally: required, a default, bounds (min, max), a longest length in
-- characters (max_len), a Lua pattern, or the values allowed (one_of). An
-- unknown tool, an unknown, missing or bad argument fails the call with
-- the reason; the arguments are checked in name order, so the reason is
-- the same for the same call.

local tools = {
  search = {
    route = "search-svc",
    args = {
      query = {type = "string", required = true, max_len = 200},
      limit = {type = "integer", default = 10, min = 1, max = 50},
    },
  },
  send_email = {
    route = "mail-svc",
    args = {
      to = {type = "string", required = true, pattern = "^[%w._%-]+@[%w.-]+%.%a+$"},
      subject = {type = "string", required = true, max_len = 120},
      cc = {type = "array"},
    },
  },
  transfer = {
    route = "payments-svc",
    args = {
      amount_cents = {type = "integer", required = true, min = 1, max = 100000},
      currency = {type = "string", required = true, one_of = {"EUR", "USD"}},
      memo = {type = "string", max_len = 140},
    },
  },
}

-- The reason value breaks rule, or nil.
local function problem(name, value, rule)
  local kind = json.type(value)
  if kind ~= rule.type then
    return string.format("%s must be of type %s, not %s", name, rule.type, kind or "unknown")
  end
  if rule.min and value < rule.min then
    return string.format("%s must be at least %d", name, rule.min)
  end
  if rule.max and value > rule.max then
    return string.format("%s must be at most %d", name, rule.max)
  end
  if rule.max_len and utf8.len(value) > rule.max_len then
    return string.format("%s is longer than %d characters", name, rule.max_len)
  end
  if rule.pattern and not value:match(rule.pattern) then
    return name .. " is not well formed"
  end
  if rule.one_of then
    for _, allowed in ipairs(rule.one_of) do
      if value == allowed then
        return nil
      end
    end
    return name .. " must be one of " .. table.concat(rule.one_of, ", ")
  end
  return nil
end

return function(p)
  local tool = tools[p.tool]
  if not tool then
    error("unknown tool: " .. tostring(p.tool), 0)
  end
  local args = p.args or json.object()
  if json.type(args) ~= "object" then
    error("args must be an object", 0)
  end
  for name in pairs(args) do
    if not tool.args[name] then
      error(p.tool .. ": unexpected argument " .. name, 0)
    end
  end
  for name, rule in pairs(tool.args) do
    local value = args[name]
    if value == nil then
      if rule.required then
        error(p.tool .. ": missing argument " .. name, 0)
      end
      args[name] = rule.default
    else
      local why = problem(name, value, rule)
      if why then
        error(p.tool .. ": " .. why, 0)
      end
    end
  end
  return {tool = p.tool, route = tool.route, args = args}
end
