//! A model's own Jinja chat template (its GGUF's `tokenizer.chat_template`), rendered with
//! minijinja the way Hugging Face's transformers render it, for the prompts llama.cpp's
//! built-in templates cannot write: those that offer tools. The template comes with a model
//! file and is untrusted: rendering is bounded (minijinja's fuel) and its errors are errors.
use minijinja::{Environment, Error, ErrorKind, Value, value::Kwargs};
use serde::Serialize;

use crate::lm::{PromptMessage, ToolDefinition};

/// What a render may spend: one fuel is an instruction or 64 bytes of data made (strings,
/// lists, output), so this also bounds a render's memory to about 256 MiB. A long chat renders
/// in well under a tenth of it.
const FUEL: u64 = 4_000_000;
/// A rendered prompt larger than this is refused (far beyond any context).
const MAX_PROMPT_BYTES: usize = 16 << 20;

/// The prompt `template` writes for `messages` offering `tools`, with the assistant's turn
/// opened when `add_generation_prompt`. `bos_token` is left empty: the tokenizer adds it.
pub fn render(
    template: &str,
    messages: &[PromptMessage],
    tools: &[ToolDefinition],
    eos_token: &str,
    add_generation_prompt: bool,
) -> Result<String, String> {
    let mut env = Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .map_err(|e| format!("the template syntax could not be set up: {e}"))?;
    env.set_syntax(syntax);
    env.set_fuel(Some(FUEL));
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_filter("tojson", to_json);
    env.add_function(
        "raise_exception",
        |message: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, message))
        },
    );
    env.add_function("strftime_now", |format: String| {
        chrono::Utc::now().format(&format).to_string()
    });
    env.add_template("chat", template)
        .map_err(|e| format!("the model's chat template does not parse: {e}"))?;
    let messages: Vec<TemplateMessage> = messages.iter().map(TemplateMessage::from).collect();
    let prompt = env
        .get_template("chat")
        .and_then(|t| {
            t.render(minijinja::context! {
                messages => Value::from(minijinja::value::Serde(&messages)),
                tools => Value::from(minijinja::value::Serde(tools)),
                add_generation_prompt,
                bos_token => "",
                eos_token,
                date_string => chrono::Utc::now().format("%d %b %Y").to_string(),
            })
        })
        .map_err(|e| format!("the model's chat template failed: {e}"))?;
    if prompt.len() > MAX_PROMPT_BYTES {
        return Err("the model's chat template wrote a prompt too large to use".into());
    }
    Ok(prompt)
}

/// A message as templates read one (the OpenAI shape, with a call's arguments as an object,
/// as transformers pass them).
#[derive(Serialize)]
struct TemplateMessage {
    role: &'static str,
    content: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<String>,
}

impl From<&PromptMessage> for TemplateMessage {
    fn from(message: &PromptMessage) -> Self {
        let tool_calls = message
            .tool_calls
            .iter()
            .map(|call| {
                let arguments = serde_json::from_str::<serde_json::Value>(&call.arguments)
                    .unwrap_or_else(|_| serde_json::Value::String(call.arguments.clone()));
                serde_json::json!({
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": arguments},
                })
            })
            .collect();
        Self {
            role: message.role,
            content: message.content.replace('\0', "\u{FFFD}"),
            tool_calls,
            tool_call_id: message.tool_call_id.clone(),
        }
    }
}

/// `tojson` as Python's `json.dumps` writes it (transformers' filter): `", "` and `": "`
/// between items, keys in their order, text not escaped for HTML (a prompt is no page).
fn to_json(value: &Value, options: Kwargs) -> Result<String, Error> {
    let indent: Option<usize> = options.get("indent")?;
    options.assert_all_used()?;
    let invalid = |e: serde_json::Error| Error::new(ErrorKind::InvalidOperation, e.to_string());
    let mut out = Vec::new();
    match indent {
        Some(width) => {
            let spaces = " ".repeat(width);
            let formatter = serde_json::ser::PrettyFormatter::with_indent(spaces.as_bytes());
            let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
            value.serialize(&mut serializer).map_err(invalid)?;
        }
        None => return Ok(python_json(value)),
    }
    String::from_utf8(out).map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))
}

/// `value` in JSON as Python's `json.dumps` writes it by default, the form models saw their
/// tools and calls in when they were trained.
pub(super) fn python_json(value: &impl Serialize) -> String {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonStyle);
    match value.serialize(&mut serializer) {
        Ok(()) => String::from_utf8(out).unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Python's default JSON separators.
struct PythonStyle;

impl serde_json::ser::Formatter for PythonStyle {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::ToolCall;

    const QWEN: &str = include_str!("../../../testkit/fixtures/llama-server-tools/template.jinja");

    /// The request llama-server was sent, as the messages and tools the app would send.
    fn recorded_request() -> (Vec<PromptMessage>, Vec<ToolDefinition>) {
        let request: serde_json::Value = serde_json::from_str(include_str!(
            "../../../testkit/fixtures/llama-server-tools/after-tool-result.request.json"
        ))
        .unwrap();
        let messages = request["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| PromptMessage {
                role: match m["role"].as_str().unwrap() {
                    "user" => "user",
                    "assistant" => "assistant",
                    "tool" => "tool",
                    other => panic!("role {other}"),
                },
                content: m["content"].as_str().unwrap_or_default().into(),
                images: Vec::new(),
                tool_calls: m["tool_calls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| ToolCall {
                        id: c["id"].as_str().unwrap().into(),
                        name: c["function"]["name"].as_str().unwrap().into(),
                        arguments: c["function"]["arguments"].as_str().unwrap().into(),
                    })
                    .collect(),
                tool_call_id: m["tool_call_id"].as_str().map(Into::into),
            })
            .collect();
        let tools = request["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| ToolDefinition {
                name: t["function"]["name"].as_str().unwrap().into(),
                description: t["function"]["description"].as_str().unwrap().into(),
                parameters: t["function"]["parameters"].clone(),
            })
            .collect();
        (messages, tools)
    }

    #[test]
    fn renders_a_real_template_exactly_as_llama_server_did() {
        let (messages, tools) = recorded_request();
        let prompt = render(QWEN, &messages, &tools, "<|im_end|>", true).unwrap();
        let recorded: serde_json::Value = serde_json::from_str(include_str!(
            "../../../testkit/fixtures/llama-server-tools/after-tool-result.prompt.json"
        ))
        .unwrap();
        assert_eq!(prompt, recorded["prompt"].as_str().unwrap());
    }

    #[test]
    fn a_broken_or_endless_template_is_an_error() {
        let (messages, tools) = recorded_request();
        let error = render("{% for m in messages %}", &messages, &tools, "", true).unwrap_err();
        assert!(error.contains("does not parse"), "{error}");
        let error = render(
            "{{ raise_exception('no tools here') }}",
            &messages,
            &tools,
            "",
            true,
        )
        .unwrap_err();
        assert!(error.contains("no tools here"), "{error}");
        let endless =
            "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}";
        let started = std::time::Instant::now();
        let error = render(endless, &messages, &tools, "", true).unwrap_err();
        assert!(error.contains("fuel"), "{error}");
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        // Each doubling is one instruction; the bytes it makes are charged too.
        let doubling = "{% set ns = namespace(s='x' * 1000000) %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}";
        let error = render(doubling, &messages, &tools, "", true).unwrap_err();
        assert!(error.contains("fuel"), "{error}");
    }

    #[test]
    fn python_methods_templates_use_work() {
        let (messages, tools) = recorded_request();
        let prompt = render(
            "{{ messages[0].content.strip().upper() }}|{{ tools[0].function.name.startswith('get') }}|{{ {'a': 1, 'b': [2, 3]} | tojson }}",
            &messages,
            &tools,
            "",
            true,
        )
        .unwrap();
        assert_eq!(prompt, r#"WEATHER IN LONDON?|True|{"a": 1, "b": [2, 3]}"#);
    }
}
