// Shared start-up of the Node.js peers, as _serve.py does it for the Python ones: listen on a
// free loopback port, print "ready PORT", then answer each stdin line with `command(line)`
// until stdin closes.
import { createInterface } from 'node:readline';

export function serve(server, command = (line) => `unknown command ${JSON.stringify(line)}`) {
  server.listen(0, '127.0.0.1', () => {
    console.log(`ready ${server.address().port}`);
    const lines = createInterface({ input: process.stdin });
    lines.on('line', (line) => console.log(command(line.trim())));
    lines.on('close', () => process.exit(0));
  });
}

/** The body of a node:http request, whole. */
export async function body(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks);
}
