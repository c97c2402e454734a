// An A2A 1.0 agent card served by the JS SDK (@a2a-js/sdk's agentCardHandler on express) at
// /.well-known/agent-card.json, with the skill `book-flight`.
import { createServer } from 'node:http';
import express from 'express';
import { agentCardHandler } from '@a2a-js/sdk/server/express';
import { serve } from './_serve.mjs';

const app = express();
const server = createServer(app);
const card = async () => {
  const { port } = server.address();
  return {
    name: 'JS Peer Agent',
    description: 'Books trips for the protocol matrix.',
    version: '1.3.0',
    supportedInterfaces: [{ url: `http://127.0.0.1:${port}/a2a`, protocolBinding: 'JSONRPC', protocolVersion: '1.0' }],
    capabilities: { streaming: false },
    defaultInputModes: ['text/plain'],
    defaultOutputModes: ['text/plain'],
    skills: [{ id: 'book-flight', name: 'Book a flight', description: 'Books a flight.', tags: ['travel'] }],
  };
};
app.use('/.well-known/agent-card.json', agentCardHandler({ agentCardProvider: card }));
serve(server);
