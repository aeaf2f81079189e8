/**
 * A TCP proxy in front of a real PostgreSQL or Redis, to inject network faults and to
 * observe what a server sends to its database. Nothing is faked: bytes are forwarded to
 * the real server unchanged, in order.
 *
 * Modes:
 * - `forward`: normal.
 * - `pause`: a partition. Connections stay open but nothing moves either way; bytes are
 *   buffered (as TCP would keep retransmitting them) and delivered, in order, on `forward()`.
 * - `refuse`: the peer is gone. Every connection is reset and new ones are closed at once.
 *
 * `responseDelayMs` holds every byte coming back from the real server for that long
 * (requests reach it at once), which makes a query see the data as it was when it was sent
 * while its answer arrives later.
 *
 * When `countPostgres` is set, the PostgreSQL frontend protocol is parsed and the SQL text of
 * every statement the client sends (simple `Q`uery and extended-protocol `P`arse messages) is
 * recorded in `statements`.
 */
import net from "node:net";

type Mode = "forward" | "pause" | "refuse";

class Pipe {
  private readonly queue: { at: number; data: Buffer }[] = [];
  private timer: NodeJS.Timeout | undefined;
  constructor(
    private readonly to: net.Socket,
    private readonly proxy: TcpProxy,
    private readonly delayed: boolean,
  ) {}
  push(data: Buffer): void {
    const last = this.queue[this.queue.length - 1]?.at ?? 0;
    this.queue.push({ at: Math.max(Date.now() + (this.delayed ? this.proxy.responseDelayMs : 0), last), data });
    this.pump();
  }
  pump(): void {
    if (this.timer) return;
    if (this.proxy.mode !== "forward") return;
    const now = Date.now();
    while (this.queue.length > 0 && this.queue[0]!.at <= now) {
      if (!this.to.destroyed) this.to.write(this.queue.shift()!.data);
      else this.queue.shift();
    }
    if (this.queue.length > 0) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.pump();
      }, this.queue[0]!.at - now);
    }
  }
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
  }
}

/** Counts statements in a PostgreSQL frontend byte stream. */
class PostgresFrontendParser {
  private buffer = Buffer.alloc(0);
  private startupDone = false;
  constructor(private readonly onMessage: (type: string, payload: Buffer) => void) {}
  feed(data: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, data]);
    for (;;) {
      if (!this.startupDone) {
        if (this.buffer.length < 8) return;
        const len = this.buffer.readInt32BE(0);
        if (this.buffer.length < len) return;
        const code = this.buffer.readInt32BE(4);
        // SSLRequest / GSSENCRequest are followed by another untyped startup message.
        if (code !== 80877103 && code !== 80877104) this.startupDone = true;
        this.buffer = this.buffer.subarray(len);
        continue;
      }
      if (this.buffer.length < 5) return;
      const len = this.buffer.readInt32BE(1);
      if (this.buffer.length < 1 + len) return;
      this.onMessage(String.fromCharCode(this.buffer[0]!), this.buffer.subarray(5, 1 + len));
      this.buffer = this.buffer.subarray(1 + len);
    }
  }
}

const cstring = (b: Buffer, from: number) => b.toString("utf8", from, b.indexOf(0, from) < 0 ? b.length : b.indexOf(0, from));

export class TcpProxy {
  mode: Mode = "forward";
  responseDelayMs = 0;
  /** Connections accepted so far. */
  connections = 0;
  /** SQL of every statement sent (PostgreSQL only, when `countPostgres`), in order. */
  readonly statements: string[] = [];
  private server: net.Server | undefined;
  private readonly pairs = new Set<{ client: net.Socket; upstream: net.Socket; up: Pipe; down: Pipe }>();
  port = 0;

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
    private readonly options: { countPostgres?: boolean } = {},
  ) {}

  async start(): Promise<number> {
    this.server = net.createServer((client) => this.accept(client));
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }

  private accept(client: net.Socket): void {
    this.connections++;
    if (this.mode === "refuse") {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(this.targetPort, this.targetHost);
    const pair = { client, upstream, up: new Pipe(upstream, this, false), down: new Pipe(client, this, true) };
    this.pairs.add(pair);
    // A named prepared statement is parsed once per connection and then only bound: count
    // each Bind of a named statement as one more run of its SQL.
    const named = new Map<string, string>();
    const parser = this.options.countPostgres
      ? new PostgresFrontendParser((type, payload) => {
          if (type === "Q") this.statements.push(cstring(payload, 0));
          else if (type === "P") {
            const name = cstring(payload, 0);
            const sql = cstring(payload, payload.indexOf(0) + 1); // statement name, then the SQL
            if (name === "") this.statements.push(sql);
            else named.set(name, sql);
          } else if (type === "B") {
            const name = cstring(payload, payload.indexOf(0) + 1); // portal name, then the statement name
            if (name !== "") this.statements.push(named.get(name) ?? name);
          }
        })
      : undefined;
    client.on("data", (d: Buffer) => {
      parser?.feed(d);
      pair.up.push(d);
    });
    upstream.on("data", (d: Buffer) => pair.down.push(d));
    const close = () => {
      pair.up.stop();
      pair.down.stop();
      client.destroy();
      upstream.destroy();
      this.pairs.delete(pair);
    };
    client.on("error", close);
    upstream.on("error", close);
    client.on("close", close);
    upstream.on("close", close);
  }

  forward(): void {
    this.mode = "forward";
    for (const p of this.pairs) {
      p.up.pump();
      p.down.pump();
    }
  }

  pause(): void {
    this.mode = "pause";
  }

  /** Resets every open connection and refuses new ones until `forward()`. */
  refuse(): void {
    this.mode = "refuse";
    for (const p of [...this.pairs]) {
      p.up.stop();
      p.down.stop();
      p.client.resetAndDestroy();
      p.upstream.destroy();
      this.pairs.delete(p);
    }
  }

  async close(): Promise<void> {
    this.refuse();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
