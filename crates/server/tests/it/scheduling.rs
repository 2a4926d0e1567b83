//! Several clients at once: outputs independent of what else runs, disconnects free their slot,
//! the prompt cache reuses exact prefixes only.

use serde_json::json;

use crate::client::{TestServer, chat, chat_text, config};

const PROMPTS: [&str; 6] = [
    "What is the capital of France?",
    "Write a haiku about rain.",
    "List three fruits.",
    "What is 2 + 2?",
    "Describe a cat in one sentence.",
    "Why is the sky blue?",
];

#[test]
fn concurrent_clients_get_their_solo_outputs() {
    let mut c = config();
    c.n_parallel = 4;
    c.n_ctx = 2048;
    let s = TestServer::start(c);
    let solo: Vec<String> = PROMPTS
        .iter()
        .map(|p| chat_text(&s.post("/v1/chat/completions", &chat(p, 16)).json()))
        .collect();
    // A fresh server, so that no prompt is served from a cache the solo runs left.
    drop(s);
    let mut c = config();
    c.n_parallel = 4;
    c.n_ctx = 2048;
    let s = TestServer::start(c);
    let together: Vec<String> = std::thread::scope(|sc| {
        let hs: Vec<_> = PROMPTS
            .iter()
            .map(|p| {
                let s = &s;
                sc.spawn(move || chat_text(&s.post("/v1/chat/completions", &chat(p, 16)).json()))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(together, solo);
    assert!(
        s.metric("n_busy_slots_per_decode") > 1.0,
        "requests overlapped"
    );
}

#[test]
fn a_client_that_disconnects_frees_its_slot() {
    let mut c = config();
    c.n_parallel = 1;
    c.n_ctx = 1024;
    let s = TestServer::start(c);
    let mut st = s.stream(
        "/v1/chat/completions",
        &json!({ "messages": [{ "role": "user", "content": "Write a long story." }],
                 "temperature": 0, "max_tokens": 900, "stream": true }),
    );
    for _ in 0..3 {
        assert!(st.next_event().is_some());
    }
    assert_eq!(s.slots()[0]["is_processing"], true);
    drop(st);
    s.wait_until("the slot to be free", |s| {
        s.slots()[0]["is_processing"] == false
    });
    assert_eq!(s.metric("requests_processing"), 0.0);
    let decoded = s.metric("tokens_predicted_total");
    assert!(
        decoded < 600.0,
        "generation went on after the disconnect: {decoded}"
    );
    assert_eq!(s.post("/v1/chat/completions", &chat("Hi", 2)).status, 200);
}

#[test]
fn a_follow_up_turn_reuses_the_cache_and_conversations_never_share_it() {
    let mut c = config();
    c.n_parallel = 1;
    c.n_ctx = 1024;
    let s = TestServer::start(c);
    let turn1 = chat("My name is Ada. What is a good name for a dog?", 12);
    let v1 = s.post("/v1/chat/completions", &turn1).json();
    let p1 = v1["usage"]["prompt_tokens"].as_u64().unwrap();
    let reply = chat_text(&v1);
    let turn2 = json!({
        "messages": [
            { "role": "user", "content": "My name is Ada. What is a good name for a dog?" },
            { "role": "assistant", "content": reply },
            { "role": "user", "content": "And for a cat?" },
        ],
        "temperature": 0, "max_tokens": 8,
    });
    let v2 = s.post("/v1/chat/completions", &turn2).json();
    let cached = v2["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert!(cached >= p1, "cached {cached} of a {p1}-token first turn");

    // Another conversation on the same slot: only the exact common token prefix is reused,
    // and its answer is what a fresh server gives.
    let other = chat("My name is Bob. What is a good name for a fish?", 12);
    let v3 = s.post("/v1/chat/completions", &other).json();
    let cached = v3["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    let tok = |body: &serde_json::Value| {
        let text = s.post("/apply-template", body).json()["prompt"].clone();
        s.post(
            "/tokenize",
            &json!({ "content": text, "add_special": true }),
        )
        .json()["tokens"]
            .as_array()
            .unwrap()
            .clone()
    };
    let (a, b) = (tok(&turn2), tok(&other));
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count() as u64;
    assert!(cached <= common, "cached {cached} > common prefix {common}");
    assert!(
        common < p1,
        "the conversations differ inside the first message"
    );
    drop(s);
    let mut c = config();
    c.n_parallel = 1;
    c.n_ctx = 1024;
    let fresh = TestServer::start(c);
    let v4 = fresh.post("/v1/chat/completions", &other).json();
    assert_eq!(v4["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(chat_text(&v3), chat_text(&v4));
}

#[test]
fn a_bounded_load_gets_every_answer_right() {
    // 64 requests from 16 clients over 4 slots: no 5xx, no lost or mixed-up answers.
    let mut c = config();
    c.n_parallel = 4;
    c.n_ctx = 2048;
    let s = TestServer::start(c);
    let prompts: Vec<String> = (0..8).map(|i| format!("Say the number {i}.")).collect();
    let solo: Vec<String> = prompts
        .iter()
        .map(|p| chat_text(&s.post("/v1/chat/completions", &chat(p, 4)).json()))
        .collect();
    std::thread::scope(|sc| {
        for client in 0..16 {
            let (s, prompts, solo) = (&s, &prompts, &solo);
            sc.spawn(move || {
                for k in 0..4 {
                    let i = (client + k) % prompts.len();
                    let r = s.post("/v1/chat/completions", &chat(&prompts[i], 4));
                    assert_eq!(r.status, 200, "{}", r.body);
                    assert_eq!(chat_text(&r.json()), solo[i], "answer to prompt {i}");
                }
            });
        }
    });
    s.wait_until("every slot idle", |s| {
        s.metric("requests_processing") == 0.0
    });
}

#[test]
fn a_slot_that_fills_its_context_stops_with_length() {
    let mut c = config();
    c.n_parallel = 2;
    c.n_ctx = 128; // 64 positions per slot
    let s = TestServer::start(c);
    let v = s
        .post(
            "/v1/chat/completions",
            &chat("Write a very long story about the sea.", 500),
        )
        .json();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    let u = &v["usage"];
    // Every one of the 64 positions holds a token; the last token sampled needs none.
    assert_eq!(u["total_tokens"], 65, "{u}");
}

#[test]
fn several_listeners_and_stopping_ends_the_scheduler() {
    let mut c = config();
    c.hosts = vec!["127.0.0.1".into(), "127.0.0.1".into()];
    c.n_parallel = 1;
    c.n_ctx = 256;
    let running = server::start(c).unwrap();
    assert_eq!(running.addrs.len(), 2);
    assert_ne!(running.addrs[0], running.addrs[1]);
    for a in &running.addrs {
        crate::client::wait_healthy(*a);
    }
    // The scheduler thread is named after the first port.
    let name = format!("sched-{}", running.addrs[0].port());
    let threads = || {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|c| c.trim() == name)
            .count()
    };
    // A thread takes its name once it runs, which may be just after the server is healthy.
    let t0 = std::time::Instant::now();
    while threads() == 0 && t0.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(threads(), 1);
    running.shutdown().unwrap();
    assert_eq!(threads(), 0, "the scheduler thread outlived the server");
}

/// `--kv-unified`: a slot may fill the whole store, not its share; a new request takes the room
/// idle slots keep for their cached prompts; when running slots together need more than the
/// store holds, the step's requests fail with llama-server's "context size has been exceeded"
/// and the server goes on serving.
#[test]
fn kv_unified_slots_share_the_whole_store() {
    let mut c = config();
    c.n_ctx = 256;
    c.n_parallel = 2;
    c.kv_unified = true;
    let s = TestServer::start(c);
    let completion = |prompt: &str, n: usize| {
        s.post(
            "/completion",
            &json!({ "prompt": prompt, "n_predict": n, "temperature": 0, "ignore_eos": true }),
        )
    };
    // 200 tokens in one slot: more than half of 256.
    let r = completion("A", 200);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["timings"]["predicted_n"], 200);
    // The other slot needs 150 more cells: the first slot's cached prompt gives them up.
    let r = completion("Bonjour", 150);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["timings"]["predicted_n"], 150);
    // Two at once need more than the store: llama-server's error, never a panic or a hang.
    let answers: Vec<_> = std::thread::scope(|sc| {
        let hs: Vec<_> = ["Once", "There"]
            .map(|p| sc.spawn(move || completion(p, 150)))
            .into_iter()
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut failed = 0;
    for a in &answers {
        if a.status == 200 {
            assert_eq!(a.json()["timings"]["predicted_n"], 150);
        } else {
            let e = a.expect_error(500, "server_error");
            assert!(
                e["message"]
                    .as_str()
                    .unwrap()
                    .contains("context size has been exceeded"),
                "{e}"
            );
            failed += 1;
        }
    }
    assert!(failed >= 1, "2 × 151 cells cannot fit in 256");
    let r = completion("Hi", 4);
    assert_eq!(r.status, 200, "{}", r.body);
}

/// The server's `-n` is the limit of requests that set none (or -1); a request's own limit
/// wins, as in llama-server (`n_predict_max`).
#[test]
fn the_servers_n_predict_is_a_default_not_a_cap() {
    let mut c = config();
    c.n_predict = Some(3);
    let s = TestServer::start(c);
    for (body, n) in [
        (
            json!({ "prompt": "Hi", "temperature": 0, "ignore_eos": true }),
            3,
        ),
        (
            json!({ "prompt": "Hi", "n_predict": -1, "temperature": 0, "ignore_eos": true }),
            3,
        ),
        (
            json!({ "prompt": "Hi", "n_predict": 7, "temperature": 0, "ignore_eos": true }),
            7,
        ),
    ] {
        let v = s.post("/completion", &body).json();
        assert_eq!(v["timings"]["predicted_n"], n, "{body}");
    }
}
