// Preloaded with `node --import ./loopback.mjs`: every TCP server the process starts listens on
// 127.0.0.1 only (servers that take just a port, like server-everything, would otherwise bind
// every interface), and the first one to listen announces its real port on stderr as
// `INTEROP_LISTENING <port>`, so PORT=0 can be used without racing for a free port.
import net from "node:net";

const listen = net.Server.prototype.listen;
let announced = false;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number" || (typeof args[0] === "string" && /^\d+$/.test(args[0]))) {
    const port = Number(args[0]);
    const rest = args.slice(1).filter((a) => typeof a === "function");
    args = [{ port, host: "127.0.0.1" }, ...rest];
  } else if (args[0] && typeof args[0] === "object" && !("path" in args[0])) {
    args[0] = { ...args[0], host: "127.0.0.1" };
  }
  this.once("listening", () => {
    if (!announced) {
      announced = true;
      process.stderr.write(`INTEROP_LISTENING ${this.address().port}\n`);
    }
  });
  return listen.apply(this, args);
};
