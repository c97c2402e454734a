// gRPC health served by grpc-js with the grpc-health-check package's HealthImplementation
// (Check and Watch). stdin: `set SERVICE STATUS` (SERVICE "-" for the server as a whole).
import { createInterface } from 'node:readline';
import grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';

const health = new HealthImplementation({ '': 'SERVING' });
const server = new grpc.Server();
health.addToServer(server);
server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, port) => {
  if (error) throw error;
  console.log(`ready ${port}`);
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    const [verb, service, status] = line.trim().split(/\s+/);
    if (verb === 'set') {
      health.setStatus(service === '-' ? '' : service, status);
      console.log('ok');
    } else {
      console.log(`unknown command ${JSON.stringify(line)}`);
    }
  });
  lines.on('close', () => process.exit(0));
});
