// The API client: the bearer token (asked once, kept in sessionStorage), JSON calls, and
// the live event stream read with fetch (EventSource cannot send the token), resumed
// with Last-Event-ID after a drop.

const TOKEN_KEY = "vmfabric.token";

export class Unauthorized extends Error {}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

async function call(method, path) {
  const reply = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${token()}`, Accept: "application/json" },
  });
  if (reply.status === 401) throw new Unauthorized("the token was refused");
  const body = await reply.json().catch(() => ({ error: reply.statusText }));
  if (!reply.ok) throw new Error(body.error || `${reply.status} ${reply.statusText}`);
  return body;
}

export const get = (path) => call("GET", path);
export const post = (path) => call("POST", path);

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

// Parse one SSE block ("id: ...\nevent: ...\ndata: ...") into {id, event, data}.
function parseBlock(block) {
  const found = { id: null, event: "message", data: "" };
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const at = line.indexOf(":");
    const name = at < 0 ? line : line.slice(0, at);
    const value = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
    if (name === "data") found.data = found.data ? `${found.data}\n${value}` : value;
    else if (name === "id" || name === "event") found[name] = value;
  }
  return found;
}

// Read /api/v1/events forever: onEvent({id, event, data}) per event, onState(true|false)
// when the stream opens or drops, onUnauthorized() (and stop) on 401.
export async function stream({ onEvent, onState, onUnauthorized }) {
  let lastId = null;
  for (;;) {
    try {
      const headers = { Authorization: `Bearer ${token()}`, Accept: "text/event-stream" };
      if (lastId) headers["Last-Event-ID"] = lastId;
      const reply = await fetch("/api/v1/events", { headers, cache: "no-store" });
      if (reply.status === 401) {
        onState(false);
        onUnauthorized();
        return;
      }
      if (!reply.ok) throw new Error(`${reply.status}`);
      onState(true);
      const reader = reply.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true }).replace(/\r/g, "");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = parseBlock(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (event.id) lastId = event.id;
          if (event.data || event.event !== "message") onEvent(event);
        }
      }
    } catch (err) {
      // the controller restarted or the network dropped: try again
    }
    onState(false);
    await sleep(1000);
  }
}
