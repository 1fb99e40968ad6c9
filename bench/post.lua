-- wrk script: POST the signed v1 form body in the file named after `--`.
-- Usage: wrk -t1 -c8 -d3s --latency -s post.lua URL -- BODY_FILE
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

function init(args)
   local file = assert(io.open(args[1], "rb"))
   wrk.body = file:read("*a")
   file:close()
end
