/** `pulsar://host:6650` or `pulsar+ssl://host:6651`, with one or more hosts. */
export interface BrokerAddress {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly tls: boolean;
}

export function parseServiceUrl(url: string): BrokerAddress[] {
  const match = /^(pulsar|pulsar\+ssl):\/\/([^/]+?)\/?$/.exec(url.trim());
  if (!match) {
    throw new TypeError(`brokerServiceUrl must look like pulsar://host:6650 or pulsar+ssl://host:6651 (got ${JSON.stringify(url)})`);
  }
  const tls = match[1] === 'pulsar+ssl';
  return match[2]!.split(',').map((hostPort) => {
    const [host, portText] = splitHostPort(hostPort);
    const port = portText === undefined ? (tls ? 6651 : 6650) : Number(portText);
    if (!host || !Number.isInteger(port) || port < 1 || port > 65535) {
      throw new TypeError(`brokerServiceUrl has an invalid host or port: ${JSON.stringify(hostPort)}`);
    }
    return { url: `${match[1]}://${host}:${port}`, host, port, tls };
  });
}

function splitHostPort(hostPort: string): [string, string | undefined] {
  if (hostPort.startsWith('[')) {
    const end = hostPort.indexOf(']');
    return [hostPort.slice(1, end), hostPort[end + 1] === ':' ? hostPort.slice(end + 2) : undefined];
  }
  const colon = hostPort.lastIndexOf(':');
  return colon < 0 ? [hostPort, undefined] : [hostPort.slice(0, colon), hostPort.slice(colon + 1)];
}
