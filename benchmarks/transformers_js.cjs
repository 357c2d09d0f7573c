// transformers.js (Node, onnxruntime-node's CPU runtime) running a MusicGen from local files, for
// benchmarks/bench_peers.py and tests/test_peers.py. Driven by benchmarks/transformers_js.py:
//
//     node benchmarks/transformers_js.cjs JOB.json
//
// JOB: {package_dir, model_root, model_name, dtype, threads, tasks: [...]}; each task is
//   {kind: "generate", prompts, max_new_tokens, guidance_scale, out}   greedy; writes <out>.codes (int32
//       [B, K, frames]) and <out>.audio (float32 [B, C, samples]) and reports their shapes;
//   {kind: "time", prompt, max_new_tokens, guidance_scale}                greedy; reports each step's seconds.
// Prints one JSON line: {versions, load_s, results: [...]}. Local files only: nothing is downloaded.
"use strict";

const fs = require("fs");
const path = require("path");

function loadLibrary(packageDir) {
    const entry = require.resolve("@huggingface/transformers", { paths: [packageDir] });
    return require(entry);
}

function packageVersion(packageDir, name) {
    const file = path.join(packageDir, "node_modules", name, "package.json");
    return JSON.parse(fs.readFileSync(file, "utf8")).version;
}

async function loadModel(tjs, job) {
    tjs.env.allowRemoteModels = false;
    tjs.env.allowLocalModels = true;
    tjs.env.localModelPath = job.model_root.endsWith("/") ? job.model_root : job.model_root + "/";
    const tokenizer = await tjs.AutoTokenizer.from_pretrained(job.model_name);
    const session_options = job.threads ? { intraOpNumThreads: job.threads, interOpNumThreads: 1 } : {};
    const model = await tjs.MusicgenForConditionalGeneration.from_pretrained(job.model_name,
                                                                             { dtype: job.dtype, session_options });
    return { tokenizer, model };
}

// The delayed token matrix the model filters into codes: captured on its way to the codec, so the audio comes
// from the very path model.generate takes.
function captureCodes(model) {
    const seen = {};
    const filter = model._apply_and_filter_by_delay_pattern_mask.bind(model);
    model._apply_and_filter_by_delay_pattern_mask = (ids) => {
        seen.codes = filter(ids);
        return seen.codes;
    };
    return seen;
}

async function generate({ tokenizer, model }, task) {
    const seen = captureCodes(model);
    const inputs = tokenizer(task.prompts, { padding: true });
    const audio = await model.generate({ ...inputs, max_new_tokens: task.max_new_tokens, do_sample: false,
                                         guidance_scale: task.guidance_scale });
    const codes = seen.codes;                                  // [1, B, K, frames] after unsqueeze_(0)
    fs.writeFileSync(task.out + ".codes", Buffer.from(Int32Array.from(codes.data, Number).buffer));
    fs.writeFileSync(task.out + ".audio", Buffer.from(Float32Array.from(audio.data).buffer));
    return { codes_shape: codes.dims.slice(1), audio_shape: audio.dims,
             input_ids: inputs.input_ids.tolist().map((row) => row.map(Number)) };
}

async function time({ tokenizer, model }, task) {
    const stamps = [];
    let puts = 0;
    const streamer = { put() { if (puts++ > 0) stamps.push(performance.now()); }, end() {} };  // 1st: the start ids
    const inputs = tokenizer([task.prompt], { padding: true });
    stamps.push(performance.now());
    await model.generate({ ...inputs, max_new_tokens: task.max_new_tokens, do_sample: false,
                           guidance_scale: task.guidance_scale, streamer });
    return { step_s: stamps.slice(1).map((t, i) => (t - stamps[i]) / 1000) };
}

async function main() {
    const job = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
    const tjs = loadLibrary(job.package_dir);
    const t = performance.now();
    const loaded = await loadModel(tjs, job);
    const load_s = (performance.now() - t) / 1000;
    const results = [];
    for (const task of job.tasks) {
        results.push(task.kind === "generate" ? await generate(loaded, task) : await time(loaded, task));
    }
    const versions = { "@huggingface/transformers": packageVersion(job.package_dir, "@huggingface/transformers"),
                       "onnxruntime-node": packageVersion(job.package_dir, "onnxruntime-node"),
                       node: process.versions.node };
    process.stdout.write(JSON.stringify({ versions, load_s, results }) + "\n");
}

main().catch((err) => {
    process.stderr.write(String(err && err.stack || err) + "\n");
    process.exit(1);
});
