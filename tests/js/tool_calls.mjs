// The official TypeScript SDK client calling tools of `agent-server serve` (streamable HTTP) or
// `agent-server stdio`, as most MCP clients do: it checks every result's structuredContent
// against the tool's outputSchema, errors included. One process drives many calls.
//
//   node tests/js/tool_calls.mjs <plan.json>
//
// plan: {"sessions": [{"http": {"url", "key"}} | {"stdio": {"command", "args", "env"}},
//                      "calls": [{"tool", "arguments"}]}]}
// An argument "$N.a.b" is the value at a.b in the structured result of call N of the session.
// Prints one JSON object: {"sessions": [{"tools_list_chars", "largest_tools": [[chars, name]]
// (the five largest), "results": [{"tool", "is_error", "code", "next_step", "text",
// "protocol_error"}]}]}.
import { readFileSync } from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const plan = JSON.parse(readFileSync(process.argv[2], "utf8"));

function transportFor(session) {
  if (session.http) {
    const headers = session.http.key ? { Authorization: `Bearer ${session.http.key}` } : {};
    return new StreamableHTTPClientTransport(new URL(session.http.url), {
      requestInit: { headers },
    });
  }
  const { command, args, env } = session.stdio;
  return new StdioClientTransport({ command, args, env, stderr: "ignore" });
}

function resolve(value, results) {
  const match = typeof value === "string" && value.match(/^\$(\d+)\.(.+)$/);
  if (!match) return value;
  return match[2].split(".").reduce((node, key) => node?.[key], results[+match[1]].structured);
}

const report = { sessions: [] };
for (const session of plan.sessions) {
  const client = new Client({ name: "agent-server-ts-test", version: "1.0.0" });
  await client.connect(transportFor(session));
  const listed = await client.listTools(); // also primes the output-schema validators
  const results = [];
  for (const call of session.calls) {
    const seen = { tool: call.tool };
    const args = Object.fromEntries(
      Object.entries(call.arguments ?? {}).map(([k, v]) => [k, resolve(v, results)]),
    );
    try {
      const result = await client.callTool({ name: call.tool, arguments: args });
      const error = result.structuredContent?.error;
      seen.is_error = Boolean(result.isError);
      seen.code = error?.code ?? null;
      seen.next_step = error?.next_step ?? null;
      seen.text = result.content?.[0]?.text ?? "";
      seen.structured = result.structuredContent ?? null;
    } catch (err) {
      seen.protocol_error = `${err?.name}: ${err?.message}`;
    }
    results.push(seen);
  }
  const largest = listed.tools
    .map((tool) => [JSON.stringify(tool).length, tool.name])
    .sort((a, b) => b[0] - a[0])
    .slice(0, 5);
  report.sessions.push({
    tools_list_chars: JSON.stringify(listed).length,
    largest_tools: largest,
    results,
  });
  await client.close();
}
process.stdout.write(JSON.stringify(report) + "\n");
