// MCP servers of the official TypeScript SDK at /mcp, with the tools `add` and `echo`:
//   --sdk v2   @modelcontextprotocol/server (2026-07-28), createMcpHandler with legacy: 'reject'
//              (modern-only; stateless by construction)
//   --sdk v1   @modelcontextprotocol/sdk 1.x (handshake era), sessions, with an event store:
//              every SSE answer opens with the priming event
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import { body, serve } from './_serve.mjs';

const sdk = process.argv[process.argv.indexOf('--sdk') + 1];
const text = (t) => ({ content: [{ type: 'text', text: t }] });

async function v2() {
  const { McpServer, createMcpHandler } = await import('@modelcontextprotocol/server');
  const handler = createMcpHandler(() => {
    const server = new McpServer({ name: 'ts-peer-v2', version: '2.4.0' });
    server.registerTool('add', { description: 'Adds.' }, async () => text('3'));
    server.registerTool('echo', { description: 'Echoes.' }, async () => text('ok'));
    return server;
  }, { legacy: 'reject' });
  return createServer(async (req, res) => {
    const payload = req.method === 'GET' || req.method === 'HEAD' ? undefined : await body(req);
    const request = new Request(`http://${req.headers.host}${req.url}`, {
      method: req.method, headers: req.headers, body: payload,
    });
    const response = await handler.fetch(request);
    res.writeHead(response.status, Object.fromEntries(response.headers));
    if (response.body) {
      for await (const chunk of response.body) res.write(chunk);
    }
    res.end();
  });
}

async function v1() {
  const { McpServer } = await import('@modelcontextprotocol/sdk/server/mcp.js');
  const { StreamableHTTPServerTransport } = await import('@modelcontextprotocol/sdk/server/streamableHttp.js');
  const { InMemoryEventStore } = await import('@modelcontextprotocol/sdk/examples/shared/inMemoryEventStore.js');
  const sessions = new Map();
  return createServer(async (req, res) => {
    const payload = req.method === 'POST' ? JSON.parse((await body(req)).toString() || 'null') : undefined;
    const id = req.headers['mcp-session-id'];
    let transport = id && sessions.get(id);
    if (!transport) {
      if (req.method !== 'POST' || payload?.method !== 'initialize') {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32000, message: 'Bad Request: No valid session ID provided' } }));
        return;
      }
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        eventStore: new InMemoryEventStore(),
        onsessioninitialized: (sid) => sessions.set(sid, transport),
      });
      transport.onclose = () => transport.sessionId && sessions.delete(transport.sessionId);
      const server = new McpServer({ name: 'ts-peer-v1', version: '1.32.2' });
      server.registerTool('add', { description: 'Adds.' }, async () => text('3'));
      server.registerTool('echo', { description: 'Echoes.' }, async () => text('ok'));
      await server.connect(transport);
    }
    await transport.handleRequest(req, res, payload);
  });
}

serve(sdk === 'v2' ? await v2() : await v1());
