//! Issue 17, item 3: files attached to a message. Text-like files and PDFs (their text
//! extracted) go into the prompt labelled with their names and count against the context;
//! images only for a model that can see (llama-server's `/props`); every refusal is readable
//! and stores nothing; chips download the original, never render it; edits keep the files;
//! export and import carry them; a shared link names them without sharing them.
use base64::Engine as _;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, hrefs, import_form, reply_id};

const NOTES: &[u8] = b"# Shopping\n\n- apples\n- <script>alert(1)</script>\n";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01";

/// A one-page PDF whose page shows `text` in Helvetica (offsets computed, so readers accept it).
pub fn pdf_with_text(text: &str) -> Vec<u8> {
    let stream = format!("BT /F1 12 Tf 72 712 Td ({text}) Tj ET");
    pdf_of(vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_vec(),
        format!("<< /Length {} >>\nstream\n{stream}\nendstream", stream.len()).into_bytes(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_vec(),
    ])
}

/// A PDF of `objects` (numbered from 1, the first the catalog), with the cross-reference table
/// readers check.
fn pdf_of(objects: Vec<Vec<u8>>) -> Vec<u8> {
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        pdf.extend_from_slice(object);
        pdf.extend_from_slice(b"\nendobj\n");
    }
    let xref = pdf.len();
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        pdf.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

/// Files by name, as a form sends them.
type Files<'a> = Vec<(&'a str, &'a [u8])>;

fn file(name: &str, bytes: &[u8]) -> Part {
    Part::bytes(bytes.to_vec()).file_name(name.to_owned())
}

/// The composer's multipart form: the message and its files.
fn composer(content: &str, files: Vec<(&str, &[u8])>) -> Form {
    let mut form = Form::new().text("content", content.to_owned());
    for (name, bytes) in files {
        form = form.part("files", file(name, bytes));
    }
    form
}

async fn post_multipart(app: &TestApp, path: &str, form: Form, htmx: bool) -> reqwest::Response {
    let mut request = app.client.post(app.url(path)).multipart(form);
    if htmx {
        request = request.header("HX-Request", "true");
    }
    request.send().await.unwrap()
}

/// What the model was last asked, as the fake server received it.
fn last_prompt(app: &TestApp) -> Vec<Value> {
    app.fake_lm.log(|log| {
        log.requests.back().expect("a request")["messages"]
            .as_array()
            .unwrap()
            .clone()
    })
}

/// The download links a page shows, in order.
fn chips(html: &str) -> Vec<String> {
    hrefs(html, "attachment")
}

async fn message_count(app: &TestApp) -> i64 {
    app.count("messages").await
}

#[tokio::test]
async fn files_reach_the_prompt_labelled_and_download_exactly_as_sent() {
    let app = TestApp::spawn().await;
    let chat = app.create_chat(&app.client, "").await;
    let pdf = pdf_with_text("The invoice total is 42 euros");
    let form = composer(
        "What do these say?",
        vec![("notes.md", NOTES), ("C:\\docs\\invoice.pdf", &pdf)],
    );
    // Without JavaScript: a plain multipart form, then a 303 to the reply.
    let response = post_multipart(&app, &format!("/chats/{chat}/messages"), form, false).await;
    assert_eq!(response.status(), 303);
    app.finished(reply_id(&response)).await;

    // The prompt: each file's text labelled with its name, then the question.
    let prompt = last_prompt(&app);
    let user = prompt.last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        user.starts_with("Attached file “notes.md”:\n```\n# Shopping"),
        "{user}"
    );
    assert!(user.contains("Attached file “invoice.pdf”:"), "{user}");
    assert!(user.contains("The invoice total is 42 euros"), "{user}");
    assert!(user.ends_with("\n\nWhat do these say?"), "{user}");

    // The page: chips that download the originals; the file's markup is never on the page.
    let page = app
        .get(&format!("/chats/{chat}"))
        .await
        .text()
        .await
        .unwrap();
    let links = chips(&page);
    assert_eq!(links.len(), 2, "{page}");
    assert!(page.contains("notes.md") && page.contains("invoice.pdf"));
    assert!(!page.contains("<script>alert(1)</script>"));
    let download = app.get(&links[0]).await;
    assert_eq!(download.status(), 200);
    let headers = download.headers().clone();
    assert_eq!(headers["content-type"], "text/markdown; charset=utf-8");
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"notes.md\"")
            && disposition.contains("filename*=UTF-8''notes.md"),
        "{disposition}"
    );
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(download.bytes().await.unwrap(), NOTES);
    let pdf_download = app.get(&links[1]).await;
    assert_eq!(pdf_download.headers()["content-type"], "application/pdf");
    assert_eq!(pdf_download.bytes().await.unwrap(), pdf);

    // Another session gets nothing, as for any id it does not own.
    let stranger = crate::helpers::browser();
    let response = stranger.get(app.url(&links[0])).send().await.unwrap();
    assert_eq!(response.status(), 404);

    // The API lists the files with the message, and downloads them too.
    let messages = app.api_messages(chat).await;
    let sent = messages.iter().find(|m| m["role"] == "user").unwrap();
    assert_eq!(sent["content"], "What do these say?");
    let files = sent["attachments"].as_array().unwrap();
    assert_eq!(files[0]["name"], "notes.md");
    assert_eq!(files[0]["media_type"], "text/markdown");
    assert_eq!(files[0]["size_bytes"], NOTES.len());
    assert_eq!(files[1]["name"], "invoice.pdf");
    assert_eq!(files[1]["media_type"], "application/pdf");
    let url = files[0]["url"].as_str().unwrap();
    assert!(url.starts_with("/api/v1/chats/"), "{url}");
    assert_eq!(app.get(url).await.bytes().await.unwrap(), NOTES);

    // The context gauge counts the files' text.
    let context: Value = app
        .get(&format!("/api/v1/chats/{chat}/context"))
        .await
        .json()
        .await
        .unwrap();
    let used = context["used_tokens"].as_u64().unwrap();
    let user_tokens = app::lm::estimate_tokens(&user) as u64;
    assert!(used >= user_tokens, "{context}");
}

#[tokio::test]
async fn with_htmx_the_new_bubble_carries_its_chips() {
    let app = TestApp::spawn().await;
    let chat = app.create_chat(&app.client, "").await;
    let form = composer("Summarise", vec![("data.csv", b"a,b\n1,2\n")]);
    let response = post_multipart(&app, &format!("/chats/{chat}/messages"), form, true).await;
    assert_eq!(response.status(), 200);
    let fragment = response.text().await.unwrap();
    let links = chips(&fragment);
    assert_eq!(links.len(), 1, "{fragment}");
    assert!(fragment.contains("data.csv") && fragment.contains("8 bytes"));
    assert_eq!(
        app.get(&links[0]).await.bytes().await.unwrap(),
        &b"a,b\n1,2\n"[..]
    );
}

#[tokio::test]
async fn a_message_of_files_only_is_named_after_its_first_file() {
    let app = TestApp::spawn().await;
    // A new chat from the home page's form, with a file and no text.
    let form = composer("", vec![("recipe.txt", b"Flour, water, salt.")]);
    let response = post_multipart(&app, "/chats", form, false).await;
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let chat: Uuid = location.trim_start_matches("/chats/").parse().unwrap();
    let messages = app.api_messages(chat).await;
    let reply = messages
        .iter()
        .find(|m| m["role"] == "assistant" && m["seq"] == 3);
    app.finished(reply.unwrap()["id"].as_str().unwrap().parse().unwrap())
        .await;
    let chat_json: Value = app
        .get(&format!("/api/v1/chats/{chat}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(chat_json["chat"]["title"], "recipe.txt");
    let user = last_prompt(&app).last().unwrap()["content"].clone();
    assert_eq!(
        user,
        "Attached file “recipe.txt”:\n```\nFlour, water, salt.\n```"
    );
    // A blank message with no file is still refused.
    let form = composer("  ", vec![]);
    let response = post_multipart(&app, &format!("/chats/{chat}/messages"), form, false).await;
    assert_eq!(response.status(), 422);
}

#[tokio::test]
async fn bad_files_are_refused_readably_and_nothing_is_stored() {
    let app = TestApp::spawn_with(|c| {
        c.max_attachments = 2;
        c.max_attachment_bytes = 64 * 1024;
        c.lm_context_tokens = Some(2048);
    })
    .await;
    let chat = app.create_chat(&app.client, "").await;
    let before = message_count(&app).await;
    let path = format!("/chats/{chat}/messages");
    let big = vec![b'a'; 64 * 1024 + 1];
    let fits_bytes_not_context = "word ".repeat(12_000);
    let scan = pdf_with_text("");
    let cases: Vec<(Files, u16, &str)> = vec![
        (
            vec![("tool.exe", b"MZ\x90\x00\x03\x00\x00\x00")],
            415,
            "“tool.exe” is not a file the model can read",
        ),
        (vec![("cat.png", PNG)], 415, "cannot see images"),
        (
            vec![("a.txt", b"a"), ("b.txt", b"b"), ("c.txt", b"c")],
            413,
            "at most 2 files",
        ),
        (
            vec![("big.txt", &big)],
            413,
            "files can be at most 64 KiB each",
        ),
        (vec![("empty.txt", b"")], 422, "“empty.txt” is empty"),
        (
            vec![("broken.pdf", b"%PDF-1.7\nnot really")],
            422,
            "could not be read as a PDF",
        ),
        (vec![("scan.pdf", &scan)], 422, "no text to read"),
        (
            vec![("long.txt", fits_bytes_not_context.as_bytes())],
            413,
            "with its files is too long for the model",
        ),
    ];
    for (files, status, words) in cases {
        let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
        // htmx: the message goes to the flash region; the composer keeps what was typed.
        let form = composer("Look at this", files.clone());
        let response = post_multipart(&app, &path, form, true).await;
        assert_eq!(response.status(), status, "{names:?}");
        let body = response.text().await.unwrap();
        let body = body.replace("&#x2f;", "/");
        assert!(body.contains(words), "{names:?}: {body}");
        // The API says the same as problem details.
        let attachments: Vec<Value> = files
            .iter()
            .map(|(name, bytes)| {
                json!({"name": name, "data": base64::engine::general_purpose::STANDARD.encode(bytes)})
            })
            .collect();
        let response = app
            .client
            .post(app.url(&format!("/api/v1{path}")))
            .json(&json!({"content": "Look at this", "attachments": attachments}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "API {names:?}");
        let problem: Value = response.json().await.unwrap();
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(words), "API {names:?}: {detail}");
    }
    // Data that is not base64, in the API.
    let response = app
        .client
        .post(app.url(&format!("/api/v1{path}")))
        .json(&json!({"content": "x", "attachments": [{"name": "a.txt", "data": "%%%"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(message_count(&app).await, before, "nothing was stored");
    assert_eq!(app.count("attachments").await, 0);
    assert_eq!(
        app.fake_lm.log(|l| l.request_count),
        0,
        "the model was not asked"
    );
}

#[tokio::test]
async fn images_go_to_a_model_that_can_see_as_image_parts() {
    let app = TestApp::spawn().await;
    app.fake_lm.set(|k| k.vision = true);
    let chat = app.create_chat(&app.client, "").await;
    let encoded = base64::engine::general_purpose::STANDARD.encode(PNG);
    let response = app
        .client
        .post(app.url(&format!("/api/v1/chats/{chat}/messages")))
        .json(&json!({"content": "What is this?", "attachments": [{"name": "dot.png", "data": encoded}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let sent: Value = response.json().await.unwrap();
    assert_eq!(
        sent["user_message"]["attachments"][0]["media_type"],
        "image/png"
    );
    let reply: Uuid = sent["assistant_message_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    app.finished(reply).await;
    let prompt = last_prompt(&app);
    let parts = prompt.last().unwrap()["content"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(parts[0], json!({"type": "text", "text": "What is this?"}));
    assert_eq!(parts[1]["type"], "image_url");
    assert_eq!(
        parts[1]["image_url"]["url"],
        format!("data:image/png;base64,{encoded}")
    );
    // The page's chip downloads it; it is never shown as an image.
    let page = app
        .get(&format!("/chats/{chat}"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(chips(&page).len(), 1);
    assert!(!page.contains("<img"), "no image is rendered");
}

#[tokio::test]
async fn an_edited_message_keeps_its_files() {
    let app = TestApp::spawn().await;
    let chat = app.create_chat(&app.client, "").await;
    let form = composer("First try", vec![("notes.md", NOTES)]);
    let response = post_multipart(&app, &format!("/chats/{chat}/messages"), form, false).await;
    let first_reply = reply_id(&response);
    app.finished(first_reply).await;
    let messages = app.api_messages(chat).await;
    let original = messages
        .iter()
        .find(|m| m["role"] == "user")
        .unwrap()
        .clone();
    let response = app
        .post(
            &format!(
                "/chats/{chat}/messages/{}/edit",
                original["id"].as_str().unwrap()
            ),
            &[("content", "Second try")],
        )
        .await;
    assert_eq!(response.status(), 303);
    app.finished(reply_id(&response)).await;
    let user = last_prompt(&app).last().unwrap()["content"].clone();
    let user = user.as_str().unwrap();
    assert!(
        user.starts_with("Attached file “notes.md”:") && user.ends_with("Second try"),
        "{user}"
    );
    let messages = app.api_messages(chat).await;
    let edited = messages
        .iter()
        .find(|m| m["role"] == "user" && m["superseded"] == false)
        .unwrap();
    assert_eq!(edited["attachments"], original["attachments"]);
    let url = edited["attachments"][0]["url"].as_str().unwrap();
    assert_eq!(app.get(url).await.bytes().await.unwrap(), NOTES);
}

#[tokio::test]
async fn export_and_import_carry_the_files_and_a_shared_link_only_names_them() {
    let app = TestApp::spawn().await;
    let chat = app.create_chat(&app.client, "").await;
    let pdf = pdf_with_text("Quarterly numbers");
    let form = composer(
        "Read these",
        vec![("notes.md", NOTES), ("report.pdf", &pdf)],
    );
    let response = post_multipart(&app, &format!("/chats/{chat}/messages"), form, false).await;
    app.finished(reply_id(&response)).await;

    let markdown = app
        .get(&format!("/chats/{chat}/export?format=md"))
        .await
        .text()
        .await
        .unwrap();
    let listed = format!("_Attached: notes.md ({} bytes), report.pdf (", NOTES.len());
    assert!(markdown.contains(&listed), "{markdown}");
    let export: Value = app
        .get(&format!("/chats/{chat}/export?format=json"))
        .await
        .json()
        .await
        .unwrap();
    let user = export["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "user")
        .unwrap();
    let files = user["attachments"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    let decode = |f: &Value| {
        base64::engine::general_purpose::STANDARD
            .decode(f["data"].as_str().unwrap())
            .unwrap()
    };
    assert_eq!(decode(&files[0]), NOTES);
    assert_eq!(decode(&files[1]), pdf);

    // Imported: a new chat whose files download as they were, and reach its prompts.
    let form = import_form(serde_json::to_vec(&export).unwrap());
    let response = post_multipart(&app, "/chats/import", form, false).await;
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let imported: Uuid = location.trim_start_matches("/chats/").parse().unwrap();
    let messages = app.api_messages(imported).await;
    let user = messages.iter().find(|m| m["role"] == "user").unwrap();
    let names: Vec<&str> = user["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["notes.md", "report.pdf"]);
    let url = user["attachments"][1]["url"].as_str().unwrap();
    assert_eq!(app.get(url).await.bytes().await.unwrap(), pdf);
    let reply = app.send_and_wait(&app.client, imported, "And now?").await;
    assert!(app.finished(reply).await.status == app::store::Status::Complete);
    let prompt = last_prompt(&app);
    let first_user = prompt.iter().find(|m| m["role"] == "user").unwrap();
    assert!(
        first_user["content"]
            .as_str()
            .unwrap()
            .contains("Quarterly numbers")
    );
    // An export whose file is damaged is refused, naming the message, and creates nothing.
    let mut damaged = export.clone();
    let chats_before = app.count("chats").await;
    for m in damaged["messages"].as_array_mut().unwrap() {
        if m["role"] == "user" {
            m["attachments"][0]["data"] = json!("not base64!");
        }
    }
    let form = import_form(serde_json::to_vec(&damaged).unwrap());
    let response = post_multipart(&app, "/chats/import", form, false).await;
    assert_eq!(response.status(), 422);
    let body = response.text().await.unwrap();
    assert!(body.contains("not valid base64"), "{body}");
    assert_eq!(app.count("chats").await, chats_before);

    // A shared link names the files but shares no download.
    let response = app.post(&format!("/chats/{chat}/share"), &[]).await;
    assert_eq!(response.status(), 303);
    let page = app
        .get(&format!("/chats/{chat}"))
        .await
        .text()
        .await
        .unwrap();
    let link = hrefs(&page, "share-link").remove(0);
    let shared = crate::helpers::browser()
        .get(app.url(&link))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        shared.contains("notes.md") && shared.contains("report.pdf"),
        "{shared}"
    );
    assert!(chips(&shared).is_empty(), "no download on a shared link");
    assert!(!shared.contains("/attachments/"));
}

#[tokio::test]
async fn names_lose_bidi_overrides_in_the_page_the_api_and_the_download() {
    let app = TestApp::spawn().await;
    let chat = app.create_chat(&app.client, "").await;
    // Shown as "invoiceexe.md" were the override kept: a name that lies about its type.
    let hostile = "invoice\u{202E}dm.exe\u{2066}\u{200B}.md";
    let form = composer("Look", vec![(hostile, NOTES)]);
    let response = post_multipart(&app, &format!("/chats/{chat}/messages"), form, false).await;
    assert_eq!(response.status(), 303);
    app.finished(reply_id(&response)).await;
    let messages = app.api_messages(chat).await;
    let sent = messages.iter().find(|m| m["role"] == "user").unwrap();
    assert_eq!(sent["attachments"][0]["name"], "invoicedm.exe.md");
    let page = app
        .get(&format!("/chats/{chat}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("invoicedm.exe.md"), "{page}");
    for invisible in ['\u{202E}', '\u{2066}', '\u{200B}'] {
        assert!(!page.contains(invisible), "{invisible:?} on the page");
    }
    let download = app.get(&chips(&page)[0]).await;
    let disposition = download.headers()["content-disposition"].to_str().unwrap();
    assert_eq!(
        disposition,
        "attachment; filename=\"invoicedm.exe.md\"; filename*=UTF-8''invoicedm.exe.md"
    );
}

/// A one-page PDF whose content stream is `unpacked_bytes` of spaces, Flate-compressed: a few
/// hundred kilobytes that unpack to far more.
fn pdf_bomb(unpacked_bytes: usize) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..unpacked_bytes / chunk.len() {
        encoder.write_all(&chunk).unwrap();
    }
    let stream = encoder.finish().unwrap();
    let mut content = format!(
        "<< /Length {} /Filter /FlateDecode >>\nstream\n",
        stream.len()
    )
    .into_bytes();
    content.extend_from_slice(&stream);
    content.extend_from_slice(b"\nendstream");
    pdf_of(vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>".to_vec(),
        content,
    ])
}

#[tokio::test]
async fn a_pdf_bomb_is_refused_naming_the_file_and_the_server_goes_on() {
    let app = TestApp::spawn_with(|config| config.pdf_memory_mib = 64).await;
    let chat = app.create_chat(&app.client, "").await;
    let before = message_count(&app).await;
    // 256 MiB unpacked, in well under a megabyte (the report's 204 KB peaked at 622 MiB).
    let bomb = pdf_bomb(256 << 20);
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let form = composer("Read this", vec![("bomb.pdf", &bomb)]);
    let response = post_multipart(&app, &format!("/chats/{chat}/messages"), form, false).await;
    assert_eq!(response.status(), 422);
    let error = response.text().await.unwrap();
    assert!(
        error.contains("“bomb.pdf” takes too much memory or time to read"),
        "{error}"
    );
    assert_eq!(message_count(&app).await, before, "nothing is stored");

    // The same bomb in an import: the same refusal, nothing created.
    let data = base64::engine::general_purpose::STANDARD.encode(&bomb);
    let export = json!({
        "format": "chat-export", "version": 1, "title": "Bomb",
        "messages": [{ "role": "user", "content": "x", "attachments": [
            { "name": "bomb.pdf", "media_type": "application/pdf", "size_bytes": bomb.len(), "data": data }
        ]}]
    });
    let chats = app.count("chats").await;
    let response = app
        .client
        .post(app.url("/api/v1/chats/import"))
        .json(&export)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("“bomb.pdf” takes too much memory"),
        "{problem}"
    );
    assert_eq!(app.count("chats").await, chats);

    // A real PDF still reads, within the same limits; a damaged one is unreadable, not a crash.
    let pdf = pdf_with_text("Still readable");
    let form = composer("And this?", vec![("fine.pdf", &pdf)]);
    let response = post_multipart(&app, &format!("/chats/{chat}/messages"), form, false).await;
    assert_eq!(response.status(), 303);
    app.finished(reply_id(&response)).await;
    assert!(
        last_prompt(&app).last().unwrap()["content"]
            .as_str()
            .unwrap()
            .contains("Still readable")
    );
    let form = composer("And this?", vec![("x.pdf", b"%PDF-1.4 garbage")]);
    let response = post_multipart(&app, &format!("/chats/{chat}/messages"), form, false).await;
    assert_eq!(response.status(), 422);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("“x.pdf” could not be read as a PDF")
    );
}
