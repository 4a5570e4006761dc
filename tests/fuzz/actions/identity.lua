-- identity: returns the payload unchanged. The fuzz target
-- (tests/fuzz/fuzz_lua.c) checks that it prints exactly as the JSON
-- printer prints the payload: the crossing from JSON to Lua and back
-- loses nothing.
return function(p)
  return p
end
