// The official TypeScript SDK client signing in to `agent-server serve` with its own OAuth
// support: discovery, dynamic registration, PKCE, the code, tokens, a tool call, refresh and
// revocation. The consent page is driven by the Python test: this script prints each step as
// one JSON line on stdout and reads the authorization code from stdin.
//
//   node tests/js/oauth_flow.mjs <mcp-url> <none|client_secret_post>
import readline from "node:readline";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  auth,
  discoverAuthorizationServerMetadata,
  UnauthorizedError,
} from "@modelcontextprotocol/sdk/client/auth.js";

const [serverUrl, authMethod] = process.argv.slice(2);
const redirectUrl = "http://127.0.0.1:9/callback";
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

function emit(step, data = {}) {
  process.stdout.write(JSON.stringify({ step, ...data }) + "\n");
}

async function nextLine() {
  const { value, done } = await lines.next();
  if (done) throw new Error("stdin closed");
  return JSON.parse(value);
}

class MemoryProvider {
  constructor() {
    this.saved = {};
  }
  get redirectUrl() {
    return redirectUrl;
  }
  get clientMetadata() {
    return {
      client_name: "TypeScript SDK test client",
      redirect_uris: [redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: authMethod,
    };
  }
  state() {
    return "state-" + Math.random().toString(36).slice(2);
  }
  clientInformation() {
    return this.saved.client;
  }
  saveClientInformation(info) {
    this.saved.client = info;
  }
  tokens() {
    return this.saved.tokens;
  }
  saveTokens(tokens) {
    this.saved.tokens = tokens;
  }
  saveCodeVerifier(verifier) {
    this.saved.verifier = verifier;
  }
  codeVerifier() {
    return this.saved.verifier;
  }
  redirectToAuthorization(url) {
    emit("authorize", { url: url.toString() });
  }
}

async function rawCall(token) {
  const reply = await fetch(serverUrl, {
    method: "POST",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-protocol-version": "2025-11-25",
    },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "get-wallet", arguments: {} } }),
  });
  return { status: reply.status, www: reply.headers.get("www-authenticate") };
}

async function main() {
  const provider = new MemoryProvider();
  const url = new URL(serverUrl);
  let transport = new StreamableHTTPClientTransport(url, { authProvider: provider });
  let client = new Client({ name: "oauth-test", version: "1.0.0" });
  try {
    await client.connect(transport);
    throw new Error("connected without signing in");
  } catch (error) {
    if (!(error instanceof UnauthorizedError)) throw error;
  }
  emit("registered", { client: provider.saved.client });
  const { code } = await nextLine();
  await transport.finishAuth(code);
  const first = { ...provider.saved.tokens };
  emit("tokens", { tokens: first });

  transport = new StreamableHTTPClientTransport(url, { authProvider: provider });
  client = new Client({ name: "oauth-test", version: "1.0.0" });
  await client.connect(transport);
  const wallet = await client.callTool({ name: "get-wallet", arguments: {} });
  emit("called", { result: wallet });
  await nextLine(); // the test has looked at the charge

  // Refresh: the SDK trades the refresh token for a new pair (rotation).
  const refreshed = await auth(provider, { serverUrl: url });
  const second = { ...provider.saved.tokens };
  emit("refreshed", { result: refreshed, tokens: second });
  const again = await client.callTool({ name: "get-wallet", arguments: {} });
  emit("called-again", { result: again });

  // Revocation (RFC 7009) at the endpoint the metadata names.
  const metadata = await discoverAuthorizationServerMetadata(new URL("/", url));
  // The server's revocation form wants client_secret present, empty for a public client.
  const form = new URLSearchParams({
    token: second.access_token,
    client_id: provider.saved.client.client_id,
    client_secret: provider.saved.client.client_secret ?? "",
  });
  const revoked = await fetch(metadata.revocation_endpoint, { method: "POST", body: form });
  emit("revoked", {
    status: revoked.status,
    after: await rawCall(second.access_token),
    first_after: await rawCall(first.access_token),
  });
  await client.close();
}

main().then(
  () => process.exit(0),
  (error) => {
    emit("error", { message: String(error && error.stack ? error.stack : error) });
    process.exit(1);
  },
);
