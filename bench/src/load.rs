//! Load with nothing lost: many simulated users chat for a while against PostgreSQL and the fake
//! model; afterwards the database must hold every sent message and every completed reply exactly
//! once, with exactly the text, and no request may have failed with a 5xx.
use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::{
    Bench,
    client::{browser, create_chat},
    fake_lm::{self, FakeModel, Text},
};

/// What one user sent and saw, per chat: (message, streamed reply) in order.
struct UserLog {
    chat: String,
    exchanges: Vec<(String, String)>,
}

/// Messages are made to test storage too: non-ASCII, HTML, quotes, a second line.
fn message_text(user: usize, n: usize) -> String {
    format!("user {user} message {n}: ünïcödé ✓ <b>&amp;</b> \"quoted\" 'single'\nsecond line")
}

impl Bench {
    pub async fn load(
        &self,
        users: usize,
        seconds: u64,
        think: Duration,
        tokens: usize,
    ) -> anyhow::Result<Value> {
        ensure!(
            self.postgres.is_some(),
            "the load scenario runs against PostgreSQL: pass --postgres URL"
        );
        let fake = fake_lm::start(FakeModel {
            tokens,
            rate: 200.0,
            text: Text::Numbered,
        })
        .await?;
        let app = self.app(format!("http://{fake}/v1"), users, tokens).await?;
        let expected_reply = Text::Numbered.reply(tokens);
        let server_errors = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let tasks: Vec<_> = (0..users)
            .map(|user| {
                let (base, errors) = (app.base.clone(), server_errors.clone());
                tokio::spawn(async move { chat_until(user, base, deadline, think, errors).await })
            })
            .collect();
        let mut logs = Vec::with_capacity(users);
        for task in tasks {
            logs.push(task.await??);
        }
        let sent: usize = logs.iter().map(|l| l.exchanges.len()).sum();
        let errors = server_errors.load(Ordering::SeqCst);

        // Every exchange streamed the whole reply…
        let mut problems = Vec::new();
        for log in &logs {
            for (message, streamed) in &log.exchanges {
                if *streamed != expected_reply {
                    problems.push(format!(
                        "chat {}: reply to {message:?} streamed wrong text",
                        log.chat
                    ));
                }
            }
        }
        // …and the database holds exactly what was sent and streamed, each once, in order.
        let stored = stored_messages(&app.database_url)?;
        let mut by_chat: HashMap<&str, Vec<&Value>> = HashMap::new();
        for row in &stored {
            by_chat
                .entry(row["chat_id"].as_str().unwrap_or(""))
                .or_default()
                .push(row);
        }
        for log in &logs {
            let rows = by_chat.remove(log.chat.as_str()).unwrap_or_default();
            // The greeting, then a user message and a complete reply per exchange.
            let exchanges: Vec<_> = rows.iter().skip(1).collect();
            if exchanges.len() != log.exchanges.len() * 2 {
                problems.push(format!(
                    "chat {}: {} messages stored after the greeting, {} expected",
                    log.chat,
                    exchanges.len(),
                    log.exchanges.len() * 2
                ));
                continue;
            }
            for (pair, (message, streamed)) in exchanges.chunks(2).zip(&log.exchanges) {
                let (user, reply) = (pair[0], pair[1]);
                if user["role"] != "user" || user["content"].as_str() != Some(message) {
                    problems.push(format!(
                        "chat {}: user message {message:?} stored as {user}",
                        log.chat
                    ));
                }
                if reply["role"] != "assistant"
                    || reply["status"] != "complete"
                    || reply["content"].as_str() != Some(streamed)
                {
                    problems.push(format!("chat {}: reply stored as {reply}", log.chat));
                }
            }
        }
        problems.extend(
            by_chat
                .keys()
                .map(|chat| format!("chat {chat} was stored but no user made it")),
        );
        eprintln!(
            "load: {users} users for {seconds} s: {sent} messages sent and answered, {} stored rows, {errors} server errors, {} problems",
            stored.len(),
            problems.len()
        );
        for problem in problems.iter().take(20) {
            eprintln!("  {problem}");
        }
        ensure!(errors == 0, "{errors} requests failed with a server error");
        ensure!(
            problems.is_empty(),
            "{} stored messages differ from what was sent",
            problems.len()
        );
        Ok(
            json!({"scenario": "load", "users": users, "seconds": seconds, "sent": sent,
                  "stored_rows": stored.len(), "server_errors": errors, "problems": problems.len()}),
        )
    }
}

/// One user: a chat, then send, read the reply to its end, pause, again, until the deadline.
async fn chat_until(
    user: usize,
    base: String,
    deadline: Instant,
    think: Duration,
    server_errors: Arc<AtomicUsize>,
) -> anyhow::Result<UserLog> {
    let client = browser();
    let chat = create_chat(&client, &base).await?;
    let mut log = UserLog {
        chat: chat.clone(),
        exchanges: Vec::new(),
    };
    let mut n = 0;
    while Instant::now() < deadline {
        let message = message_text(user, n);
        n += 1;
        let response = client
            .post(format!("{base}/chats/{chat}/messages"))
            .form(&[("content", message.as_str())])
            .send()
            .await?;
        if response.status().is_server_error() {
            server_errors.fetch_add(1, Ordering::SeqCst);
            bail!("user {user}: sending answered {}", response.status());
        }
        ensure!(
            response.status() == 303,
            "user {user}: sending answered {}",
            response.status()
        );
        let reply = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.split("#m-").nth(1))
            .context("no reply id")?
            .to_owned();
        let stream = client
            // The API's stream: raw deltas, checked against the rows (pages render the text).
            .get(format!("{base}/api/v1/messages/{reply}/stream"))
            .send()
            .await?;
        if stream.status().is_server_error() {
            server_errors.fetch_add(1, Ordering::SeqCst);
            bail!("user {user}: the stream answered {}", stream.status());
        }
        let mut events = stream.bytes_stream().eventsource();
        let mut text = String::new();
        while let Some(event) = events.next().await {
            let event = event.map_err(|e| anyhow::anyhow!("{e}"))?;
            match event.event.as_str() {
                "delta" => {
                    let delta: Value = serde_json::from_str(&event.data)?;
                    text.push_str(delta["text"].as_str().unwrap_or_default());
                }
                "error" => bail!("user {user}: the reply failed: {}", event.data),
                "done" => break,
                _ => {}
            }
        }
        log.exchanges.push((message, text));
        tokio::time::sleep(think).await;
    }
    Ok(log)
}

/// Every message row, ordered by chat and position, read with psql as JSON.
fn stored_messages(database_url: &str) -> anyhow::Result<Vec<Value>> {
    let output = std::process::Command::new("psql")
        .arg(database_url)
        .args([
            "-Atqc",
            "SELECT coalesce(json_agg(json_build_object('chat_id', chat_id, 'seq', seq, 'role', role, \
             'status', status, 'content', content) ORDER BY chat_id, seq), '[]') FROM messages",
        ])
        .output()
        .context("psql is needed to check what was stored")?;
    ensure!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(serde_json::from_slice(&output.stdout)?)
}
