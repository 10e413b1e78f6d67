// The page's one WebSocket to the server: the server steps the engine, the page only draws.
// Every message is a JSON object with a "type"; handlers[type] receives the ones that arrive.

export class Connection {
  constructor(url, handlers, onStatus) {
    this.url = url;
    this.handlers = handlers;
    this.onStatus = onStatus; // ("open" | "closed" | "failed") → void
    this.socket = null;
    this.waiting = []; // messages sent before the socket opened
  }

  open() {
    const socket = new WebSocket(this.url);
    this.socket = socket;
    this.waiting = []; // a new socket starts afresh (the page sends its state again)
    let opened = false;
    socket.addEventListener("open", () => {
      opened = true;
      this.onStatus("open");
      for (const message of this.waiting.splice(0)) socket.send(message);
    });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return; // the server only sends JSON; anything else is not ours to show
      }
      const handler = this.handlers[message.type];
      if (handler) handler(message);
    });
    // "error" is always followed by "close", which says what happened.
    socket.addEventListener("close", () => {
      if (this.socket === socket) this.onStatus(opened ? "closed" : "failed");
    });
  }

  // Send now, or once the socket opens; false when it has closed (the message is dropped:
  // the page already says the connection is lost).
  send(message) {
    const text = JSON.stringify(message);
    const state = this.socket ? this.socket.readyState : WebSocket.CONNECTING;
    if (state === WebSocket.OPEN) this.socket.send(text);
    else if (state === WebSocket.CONNECTING) this.waiting.push(text);
    else return false;
    return true;
  }

  get isOpen() {
    return Boolean(this.socket) && this.socket.readyState === WebSocket.OPEN;
  }
}
