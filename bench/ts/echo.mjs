// An echo server on the official TypeScript MCP SDK (v2), for
// `python -m bench.proxy_overhead --backend ts`.
//   node echo.mjs PORT [--stateless] [--json]
// 2026-07-28 requests go to the SDK's per-request handler (createMcpHandler); 2025-11-25
// traffic gets sessions (a NodeStreamableHTTPServerTransport per session) unless
// --stateless, where the SDK's stateless legacy fallback answers it. --json: plain JSON
// responses instead of SSE.
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { NodeStreamableHTTPServerTransport, toNodeHandler } from '@modelcontextprotocol/node';
import { McpServer, createMcpHandler, fromJsonSchema, isLegacyRequest } from '@modelcontextprotocol/server';
import { toWebRequest } from '@modelcontextprotocol/node';

const port = Number(process.argv[2]);
const stateless = process.argv.includes('--stateless');
const json = process.argv.includes('--json');

function factory() {
  const server = new McpServer({ name: 'echo', version: '1.0.0' });
  server.registerTool(
    'echo',
    {
      description: 'Echo the text back',
      inputSchema: fromJsonSchema({
        type: 'object',
        properties: { text: { type: 'string' } },
        required: ['text'],
      }),
    },
    async ({ text }) => ({ content: [{ type: 'text', text }] }),
  );
  return server;
}

const modern = toNodeHandler(
  createMcpHandler(factory, { legacy: stateless ? 'stateless' : 'reject', responseMode: json ? 'json' : 'auto' }),
);
const sessions = new Map();

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return text ? JSON.parse(text) : undefined;
  } catch {
    return undefined;
  }
}

async function legacy(req, res, body) {
  const id = req.headers['mcp-session-id'];
  let transport = id ? sessions.get(id) : undefined;
  if (!transport) {
    if (id || body?.method !== 'initialize') {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32001, message: 'Session not found' } }));
      return;
    }
    transport = new NodeStreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      enableJsonResponse: json,
      onsessioninitialized: (sid) => sessions.set(sid, transport),
    });
    transport.onclose = () => transport.sessionId && sessions.delete(transport.sessionId);
    await factory().connect(transport);
  }
  await transport.handleRequest(req, res, body);
}

createServer(async (req, res) => {
  const body = req.method === 'POST' ? await readBody(req) : undefined;
  if (!stateless && (await isLegacyRequest(await toWebRequest(req, body), body))) {
    await legacy(req, res, body);
    return;
  }
  await modern(req, res, body);
}).listen(port, '127.0.0.1');
