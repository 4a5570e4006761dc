-- walk: an action for the fuzz target (tests/fuzz/fuzz_lua.c) that goes
-- through any payload and builds a result from every value with the
-- sandbox's libraries, so that random payloads reach them: integer and
-- float arithmetic, string functions, patterns taken from the payload,
-- sorting, utf8, pcall around what may fail. Some payload keys steer it:
-- "~..." strings are patterns, {"rep": n, "s": text} repeats a string,
-- {"sort": [...]} sorts. What it returns may still fail to print (a
-- non-finite float, bytes that are not UTF-8): a verdict like any other.

local function caught(f, ...)
  local ok, a, b = pcall(f, ...)
  if ok then
    return {ok = true, a = a, b = b}
  end
  return {ok = false, err = tostring(a)}
end

local function text(s)
  -- only strings that can print: others become their length
  if utf8.len(s) then
    return s
  end
  return #s
end

local walk

local function number(v)
  if math.type(v) == "integer" then
    return {
      wrap = v * 3 + 1, neg = -v, half = v // 2, mod = v % 7, shl = v << 3, low = v & 0xff,
      quarter = v / 4, str = tostring(v), fmt = string.format("%5d|%x", v, v),
      exact = math.tointeger(v + 0.0) == v,
    }
  end
  local out = {
    floor = math.floor(v), ceil = math.ceil(v), fmod = math.fmod(v, 3), str = tostring(v),
    fmt = string.format("%.3f|%g|%a", v, v, v), root = math.sqrt(math.abs(v)),
    int = math.tointeger(v) or false, ult = math.ult(1, 2),
  }
  local twice = v * 2
  if twice == twice and twice ~= math.huge and twice ~= -math.huge then
    out.twice = twice
  end
  return out
end

local function str(s, depth)
  local out = {len = #s, ulen = utf8.len(s), up = text(s:upper()), rev = text(s:reverse()),
               words = select(2, s:gsub("%w+", "")), quoted = text(string.format("%q", s)),
               bytes = table.pack(s:byte(1, 8)), digits = s:match("%d+") or json.null,
               plain = s:find(".", 1, true) or false, num = tonumber(s) or json.null}
  out.bytes.n = nil
  if s:sub(1, 1) == "~" and #s > 1 then
    local pat = s:sub(2)
    local subject = "key=value; (nested (parens)) 123 abc_DEF x.y@z.com " .. s
    out.find = caught(string.find, subject, pat)
    out.match = caught(string.match, subject, pat)
    out.gsub = caught(string.gsub, subject, pat, "<%0>")
    out.gmatch = caught(function()
      local n = 0
      for _ in subject:gmatch(pat) do
        n = n + 1
      end
      return n
    end)
    for _, r in pairs(out) do
      if type(r) == "table" and r.ok == false then
        r.err = text(r.err)
      elseif type(r) == "table" and type(r.a) == "string" then
        r.a = text(r.a)
      end
    end
  end
  local codes = json.array()
  for _, c in utf8.codes(s) do
    codes[#codes + 1] = c
    if #codes == 4 then
      break
    end
  end
  out.codes = codes
  return out
end

local function array(t, depth)
  local out = json.array()
  local nums, strs = {}, {}
  for i, v in ipairs(t) do
    out[i] = walk(v, depth + 1)
    if type(v) == "number" then
      nums[#nums + 1] = v
    elseif type(v) == "string" then
      strs[#strs + 1] = v
    end
  end
  if #out == 0 then
    return out
  end
  table.sort(nums)
  table.sort(strs, function(a, b) return #a > #b end)
  local extra = {n = #t, sorted = json.array(nums), longest = text(strs[1] or ""),
                 joined = caught(table.concat, t, ",")}
  if extra.joined.ok then
    extra.joined.a = text(extra.joined.a)
  end
  if #t >= 2 then
    extra.ends = {table.unpack(t, 1, 2)}
    extra.ends[1] = walk(extra.ends[1], depth + 1)
    extra.ends[2] = walk(extra.ends[2], depth + 1)
  end
  return {items = out, extra = extra}
end

local function object(t, depth)
  local out = json.object()
  local keys = json.array()
  for k, v in json.sorted_pairs(t) do
    keys[#keys + 1] = text(k)
    out[k .. "!"] = walk(v, depth + 1)
  end
  if math.type(t.rep) == "integer" and type(t.s) == "string" then
    local r = caught(string.rep, t.s, t.rep, ",")
    out["rep?"] = r.ok and #r.a or text(r.err)
  end
  if json.type(t.sort) == "array" then
    local copy = table.move(t.sort, 1, #t.sort, 1, {})
    out["sort?"] = caught(table.sort, copy, t.desc and function(a, b) return a > b end)
    out["sort?"].items = copy
  end
  if type(t.char) == "number" then
    local r = caught(utf8.char, t.char)
    out["char?"] = r.ok and text(r.a) or text(r.err)
  end
  out["keys?"] = keys
  return out
end

walk = function(v, depth)
  local kind = json.type(v)
  if kind == "integer" or kind == "number" then
    return number(v)
  elseif kind == "string" then
    return str(v, depth)
  elseif kind == "array" then
    return array(v, depth)
  elseif kind == "object" then
    return object(v, depth)
  elseif kind == "null" then
    return tostring(v)
  end
  return v
end

return function(p)
  return {kind = json.type(p), value = walk(p, 0)}
end
