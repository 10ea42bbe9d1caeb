// Runs dynalite (a local DynamoDB-compatible server) on loopback.
//   node tools/dynalite/serve.js [PORT] [PATH]
// PORT 0 (the default) picks a free port; the first line printed is
// "DYNALITE_PORT=<port>". PATH keeps the data in LevelDB there; without it
// the data lives in memory. Tables are ACTIVE at once (no CREATING delay).
const dynalite = require('dynalite')

const port = Number(process.argv[2] || 0)
const path = process.argv[3]
const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0, path })
server.listen(port, '127.0.0.1', () => {
  console.log(`DYNALITE_PORT=${server.address().port}`)
})
// Tests set EXIT_WITH_STDIN=1 and hold our stdin open: when the test process
// ends, even killed, stdin closes and so do we.
if (process.env.EXIT_WITH_STDIN === '1') {
  process.stdin.on('end', () => process.exit(0))
  process.stdin.resume()
}
