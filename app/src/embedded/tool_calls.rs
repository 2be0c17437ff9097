//! Tool calls in the embedded engine, which has no llama-server to parse them: which format a
//! model writes its calls in (by its chat template), the grammar that keeps a call well-formed
//! once its marker is written (`grammar`: the worker applies it from that token on, a lazy
//! grammar), the filter that keeps a call's text out of the reply while it streams, and the
//! parsing of the calls at the reply's end. A template that knows no tools is taught the
//! Hermes format in a system message (`taught`), the one small models follow best.
use serde_json::Value;

use super::{stops::tail_that_starts, template::python_json};
use crate::lm::{PromptMessage, ToolCall, ToolDefinition};

/// How a model writes its calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallFormat {
    /// Hermes and Qwen: `<tool_call>{"name": …, "arguments": {…}}</tool_call>`, one per call.
    Hermes,
    /// Mistral (v3 to v7): `[TOOL_CALLS][{"name": …, "arguments": {…}}, …]`.
    MistralJson,
    /// Mistral (v11 on): `[TOOL_CALLS]name[ARGS]{…}`, repeated per call.
    MistralArgs,
    /// Llama 3.x: `{"name": …, "parameters": {…}}` as the whole reply, or after `<|python_tag|>`.
    Llama3,
    /// A template with tools in a format not known here: a reply that is only a call in JSON.
    Generic,
}

impl CallFormat {
    /// The format `template` (a Jinja chat template) writes calls in; `None` when it knows no
    /// tools (its model is taught the Hermes format instead).
    pub fn of_template(template: &str) -> Option<CallFormat> {
        if !template.contains("tools") {
            return None;
        }
        Some(if template.contains("<tool_call>") {
            CallFormat::Hermes
        } else if template.contains("[TOOL_CALLS]") && template.contains("[ARGS]") {
            CallFormat::MistralArgs
        } else if template.contains("[TOOL_CALLS]") {
            CallFormat::MistralJson
        } else if template.contains("<|python_tag|>") || template.contains("ipython") {
            CallFormat::Llama3
        } else {
            CallFormat::Generic
        })
    }

    /// The text a call starts with, when the format has one.
    pub fn marker(self) -> Option<&'static str> {
        match self {
            CallFormat::Hermes => Some("<tool_call>"),
            CallFormat::MistralJson | CallFormat::MistralArgs => Some("[TOOL_CALLS]"),
            CallFormat::Llama3 => Some("<|python_tag|>"),
            CallFormat::Generic => None,
        }
    }

    /// Whether a reply that begins with `{` may be a call (and is held until it ends).
    fn bare_json(self) -> bool {
        matches!(self, CallFormat::Llama3 | CallFormat::Generic)
    }

    /// The GBNF grammar for what follows the marker: the calls, well-formed JSON naming one
    /// of `tools`, and then the end of the reply. `None` for a format without a marker.
    pub fn grammar(self, tools: &[ToolDefinition]) -> Option<String> {
        let names = tools
            .iter()
            .map(|t| gbnf_literal(&format!("\"{}\"", json_escape(&t.name))))
            .collect::<Vec<_>>()
            .join(" | ");
        let bare_names = tools
            .iter()
            .map(|t| gbnf_literal(&t.name))
            .collect::<Vec<_>>()
            .join(" | ");
        if tools.is_empty() {
            return None;
        }
        let root = match self {
            CallFormat::Hermes => concat!(
                "root ::= ws call ws \"</tool_call>\" (ws \"<tool_call>\" ws call ws \"</tool_call>\")* ws\n",
                "call ::= \"{\" ws \"\\\"name\\\"\" ws \":\" ws name ws \",\" ws \"\\\"arguments\\\"\" ws \":\" ws object ws \"}\"\n",
            )
            .to_owned(),
            CallFormat::MistralJson => concat!(
                "root ::= ws \"[\" ws call (ws \",\" ws call)* ws \"]\" ws\n",
                "call ::= \"{\" ws \"\\\"name\\\"\" ws \":\" ws name ws \",\" ws \"\\\"arguments\\\"\" ws \":\" ws object ws \"}\"\n",
            )
            .to_owned(),
            CallFormat::MistralArgs => format!(
                "root ::= call (\"[TOOL_CALLS]\" call)* ws\ncall ::= bare-name \"[ARGS]\" object\nbare-name ::= {bare_names}\n"
            ),
            CallFormat::Llama3 => concat!(
                "root ::= ws call ws\n",
                "call ::= \"{\" ws \"\\\"name\\\"\" ws \":\" ws name ws \",\" ws \"\\\"parameters\\\"\" ws \":\" ws object ws \"}\"\n",
            )
            .to_owned(),
            CallFormat::Generic => return None,
        };
        Some(format!("{root}name ::= {names}\n{JSON_RULES}"))
    }
}

/// JSON in GBNF (after llama.cpp's `grammars/json.gbnf`), with bounded whitespace.
const JSON_RULES: &str = r#"object ::= "{" ws ( string ws ":" ws value ( ws "," ws string ws ":" ws value )* )? ws "}"
array ::= "[" ws ( value ( ws "," ws value )* )? ws "]"
value ::= object | array | string | number | "true" | "false" | "null"
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} ) )* "\""
number ::= "-"? ( [0-9] | [1-9] [0-9]{0,15} ) ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?
ws ::= | " " | "\n" [ \t]{0,20}
"#;

/// `text` as a GBNF string literal.
fn gbnf_literal(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c as u32 == 0x7F => {
                out.push_str(&format!("\\x{:02X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `text` escaped for the inside of a JSON string.
fn json_escape(text: &str) -> String {
    let quoted = Value::String(text.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

/// A reply's text on its way out: passed on until a call begins, then held; at the end the
/// held text is parsed into calls, or, when it is no call after all, sent as text (nothing
/// the model wrote is lost).
pub struct CallFilter {
    format: CallFormat,
    names: Vec<String>,
    held: String,
    calling: bool,
    /// Whether text other than white space was sent already.
    sent_text: bool,
}

/// What one piece of text gave.
pub struct Filtered {
    /// The text to send now.
    pub text: String,
    /// The call's marker has just been written, at the end of the text so far: the grammar
    /// applies from the next token.
    pub call_began: bool,
}

impl CallFilter {
    pub fn new(format: CallFormat, tools: &[ToolDefinition]) -> Self {
        Self {
            format,
            names: tools.iter().map(|t| t.name.clone()).collect(),
            held: String::new(),
            calling: false,
            sent_text: false,
        }
    }

    pub fn push(&mut self, text: &str) -> Filtered {
        self.held.push_str(text);
        if self.calling {
            return Filtered {
                text: String::new(),
                call_began: false,
            };
        }
        if let Some(marker) = self.format.marker()
            && let Some(at) = self.held.find(marker)
        {
            let before = self.held[..at].to_owned();
            self.held.drain(..at);
            self.calling = true;
            return Filtered {
                call_began: self.held == marker,
                text: before,
            };
        }
        if self.format.bare_json() && !self.sent_text {
            let start = self.held.trim_start();
            if start.starts_with('{') {
                self.calling = true;
                return Filtered {
                    text: String::new(),
                    call_began: false,
                };
            }
            if start.is_empty() {
                return Filtered {
                    text: String::new(),
                    call_began: false,
                };
            }
        }
        let keep = self
            .format
            .marker()
            .map_or(0, |marker| tail_that_starts(&self.held, marker));
        let send = self.held.len() - keep;
        let text: String = self.held.drain(..send).collect();
        self.sent_text |= !text.trim().is_empty();
        Filtered {
            text,
            call_began: false,
        }
    }

    /// The text still to send and the calls, at the reply's end.
    pub fn finish(&mut self) -> (String, Vec<ToolCall>) {
        let held = std::mem::take(&mut self.held);
        if !self.calling {
            return (held, Vec::new());
        }
        match parse(self.format, &held, &self.names) {
            Some(calls) if !calls.is_empty() => (String::new(), calls),
            _ => (held, Vec::new()),
        }
    }
}

/// The calls in `text` (what followed the visible reply, from the marker on); `None` when it
/// is not calls in `format`. A bare JSON reply counts only when it names an offered tool.
pub fn parse(format: CallFormat, text: &str, names: &[String]) -> Option<Vec<ToolCall>> {
    match format {
        CallFormat::Hermes => text
            .split("<tool_call>")
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                let body = part.split("</tool_call>").next().unwrap_or(part);
                one_call(&serde_json::from_str(body.trim()).ok()?)
            })
            .collect(),
        CallFormat::MistralJson => {
            let body = text.strip_prefix("[TOOL_CALLS]")?.trim();
            calls_in(&serde_json::from_str(body).ok()?)
        }
        CallFormat::MistralArgs => text
            .split("[TOOL_CALLS]")
            .filter(|part| !part.trim().is_empty())
            .map(|part| {
                let (name, arguments) = part.split_once("[ARGS]")?;
                let arguments: Value = serde_json::from_str(arguments.trim()).ok()?;
                Some(call(name.trim(), &arguments))
            })
            .collect(),
        CallFormat::Llama3 | CallFormat::Generic => {
            let marked = text.trim_start().starts_with("<|python_tag|>");
            let body = text.trim().trim_start_matches("<|python_tag|>").trim();
            let calls = calls_in(&serde_json::from_str(body).ok()?)?;
            let offered = calls.iter().all(|c| names.contains(&c.name));
            (marked || offered).then_some(calls)
        }
    }
}

/// The calls a JSON value holds: one call, an array of them, or `{"tool_calls": […]}`.
fn calls_in(value: &Value) -> Option<Vec<ToolCall>> {
    match value {
        Value::Array(items) => items.iter().map(one_call).collect(),
        Value::Object(map) => match map.get("tool_calls").or_else(|| map.get("tool_call")) {
            Some(Value::Array(items)) => items.iter().map(one_call).collect(),
            Some(inner) => Some(vec![one_call(inner)?]),
            None => Some(vec![one_call(value)?]),
        },
        _ => None,
    }
}

/// A call as models write one: `{"name", "arguments"}` (or `parameters`), or the OpenAI shape
/// `{"function": {…}}`.
fn one_call(value: &Value) -> Option<ToolCall> {
    let value = value.get("function").unwrap_or(value);
    let name = value.get("name")?.as_str()?;
    let arguments = value
        .get("arguments")
        .or_else(|| value.get("parameters"))
        .cloned()
        .unwrap_or_else(|| Value::Object(Default::default()));
    Some(call(name, &arguments))
}

fn call(name: &str, arguments: &Value) -> ToolCall {
    ToolCall {
        id: format!("call_{}", &uuid::Uuid::new_v4().simple().to_string()[..24]),
        name: name.to_owned(),
        // Arguments a model wrote as a string stay that string (not JSON: the tool says so).
        arguments: match arguments {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        },
    }
}

/// The conversation for a template that knows no tools: the tools and the Hermes format told
/// in the system message, earlier calls written into the assistant's turns and their results
/// given back as the user's, the way Qwen's template writes them.
pub fn taught(messages: &[PromptMessage], tools: &[ToolDefinition]) -> Vec<PromptMessage> {
    let signatures = tools.iter().map(python_json).collect::<Vec<_>>().join("\n");
    let instructions = format!(
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
         You are provided with function signatures within <tools></tools> XML tags:\n\
         <tools>\n{signatures}\n</tools>\n\n\
         For each function call, return a json object with function name and arguments within \
         <tool_call></tool_call> XML tags:\n<tool_call>\n\
         {{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n</tool_call>"
    );
    let mut out = with_calls_as_text(messages);
    match out.first_mut().filter(|m| m.role == "system") {
        Some(system) => system.content = format!("{}\n\n{instructions}", system.content),
        // The default system line of Qwen's template, which small models follow well.
        None => out.insert(
            0,
            text(
                "system",
                format!("You are a helpful assistant.\n\n{instructions}"),
            ),
        ),
    }
    out
}

fn text(role: &'static str, content: String) -> PromptMessage {
    PromptMessage {
        role,
        content,
        images: Vec::new(),
        tool_calls: Vec::new(),
        tool_call_id: None,
    }
}

/// `messages` with earlier calls written into the assistant's turns (Hermes' form) and their
/// results as the user's, for a template that knows no tools.
pub fn with_calls_as_text(messages: &[PromptMessage]) -> Vec<PromptMessage> {
    let mut out: Vec<PromptMessage> = Vec::with_capacity(messages.len());
    for message in messages {
        match message.role {
            "tool" => {
                let result = format!("<tool_response>\n{}\n</tool_response>", message.content);
                match out
                    .last_mut()
                    .filter(|m| m.role == "user" && m.content.ends_with("</tool_response>"))
                {
                    Some(previous) => {
                        previous.content.push('\n');
                        previous.content.push_str(&result);
                    }
                    None => out.push(text("user", result)),
                }
            }
            "assistant" if !message.tool_calls.is_empty() => {
                let mut turn = message.clone();
                for call in std::mem::take(&mut turn.tool_calls) {
                    let arguments: Value = serde_json::from_str(&call.arguments)
                        .unwrap_or(Value::String(call.arguments.clone()));
                    let body = serde_json::json!({"name": call.name, "arguments": arguments});
                    if !turn.content.is_empty() {
                        turn.content.push('\n');
                    }
                    let body = python_json(&body);
                    turn.content
                        .push_str(&format!("<tool_call>\n{body}\n</tool_call>"));
                }
                out.push(turn);
            }
            _ => out.push(message.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Vec<ToolDefinition> {
        vec![ToolDefinition {
            name: "get_weather".into(),
            description: "Get the current weather in a city".into(),
            parameters: serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        }]
    }

    fn run(format: CallFormat, pieces: &[&str]) -> (String, Vec<ToolCall>, bool) {
        let mut filter = CallFilter::new(format, &weather());
        let mut text = String::new();
        let mut began = false;
        for piece in pieces {
            let out = filter.push(piece);
            text.push_str(&out.text);
            began |= out.call_began;
        }
        let (rest, calls) = filter.finish();
        text.push_str(&rest);
        (text, calls, began)
    }

    #[test]
    fn the_formats_are_told_by_their_templates() {
        let qwen = include_str!("../../../testkit/fixtures/llama-server-tools/template.jinja");
        assert_eq!(CallFormat::of_template(qwen), Some(CallFormat::Hermes));
        let smol = "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}";
        assert_eq!(CallFormat::of_template(smol), None);
        assert_eq!(
            CallFormat::of_template(
                "{% if tools %}[AVAILABLE_TOOLS]{{ tools }}{% endif %}[TOOL_CALLS]"
            ),
            Some(CallFormat::MistralJson)
        );
        assert_eq!(
            CallFormat::of_template("{{ tools }}[TOOL_CALLS]{{ name }}[ARGS]"),
            Some(CallFormat::MistralArgs)
        );
        assert_eq!(
            CallFormat::of_template("{{ tools }}<|start_header_id|>ipython<|end_header_id|>"),
            Some(CallFormat::Llama3)
        );
        assert_eq!(
            CallFormat::of_template("{{ tools | tojson }}"),
            Some(CallFormat::Generic)
        );
    }

    #[test]
    fn a_hermes_call_split_across_pieces_is_held_and_parsed() {
        let (text, calls, began) = run(
            CallFormat::Hermes,
            &[
                "Let me look.",
                " <tool",
                "_call",
                ">",
                "\n{\"name\": \"get_weather\", ",
                "\"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
            ],
        );
        assert_eq!(text, "Let me look. ");
        assert!(
            began,
            "the marker ended at a piece's end: the grammar applies next"
        );
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].name, "get_weather");
        assert_eq!(calls[0].arguments, r#"{"city":"Paris"}"#);
        assert!(calls[0].id.starts_with("call_"));
    }

    #[test]
    fn parallel_hermes_calls_each_become_a_call() {
        let (text, calls, _) = run(
            CallFormat::Hermes,
            &[
                "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n</tool_call>",
            ],
        );
        assert_eq!(text, "");
        let cities: Vec<_> = calls.iter().map(|c| c.arguments.as_str()).collect();
        assert_eq!(cities, [r#"{"city":"Paris"}"#, r#"{"city":"Rome"}"#]);
        assert_ne!(calls[0].id, calls[1].id);
    }

    #[test]
    fn what_is_no_call_after_all_is_sent_as_text() {
        // A marker straddled by a token, then no JSON: the model's words are kept.
        let (text, calls, began) = run(CallFormat::Hermes, &["See <tool_call>.", " not json"]);
        assert_eq!(
            (text.as_str(), calls.len(), began),
            ("See <tool_call>. not json", 0, false)
        );
        // A prefix of the marker that turns out to be something else.
        let (text, calls, _) = run(CallFormat::Hermes, &["a <tool", "box> b"]);
        assert_eq!((text.as_str(), calls.len()), ("a <toolbox> b", 0));
        // A call cut off by the token limit.
        let (text, calls, _) = run(
            CallFormat::Hermes,
            &["<tool_call>\n{\"name\": \"get_weather\", \"argu"],
        );
        assert_eq!(
            (text.as_str(), calls.len()),
            ("<tool_call>\n{\"name\": \"get_weather\", \"argu", 0)
        );
    }

    #[test]
    fn arguments_that_are_not_json_reach_the_tool_as_written() {
        let calls = parse(
            CallFormat::Hermes,
            "<tool_call>{\"name\": \"get_weather\", \"arguments\": \"Paris!\"}</tool_call>",
            &[],
        )
        .unwrap();
        assert_eq!(calls[0].arguments, "Paris!");
    }

    #[test]
    fn mistral_calls_in_both_forms() {
        let (text, calls, _) = run(
            CallFormat::MistralJson,
            &[
                "[TOOL_CALLS]",
                "[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}]",
            ],
        );
        assert_eq!((text.as_str(), calls[0].name.as_str()), ("", "get_weather"));
        let (_, calls, _) = run(
            CallFormat::MistralArgs,
            &[
                "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Oslo\"}[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Bern\"}",
            ],
        );
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].arguments, r#"{"city":"Bern"}"#);
    }

    #[test]
    fn a_bare_json_reply_is_a_call_only_when_it_names_an_offered_tool() {
        let (text, calls, _) = run(
            CallFormat::Llama3,
            &[
                "  {\"name\": \"get_weather\",",
                " \"parameters\": {\"city\": \"Lima\"}}",
            ],
        );
        assert_eq!(
            (text.as_str(), calls[0].arguments.as_str()),
            ("", r#"{"city":"Lima"}"#)
        );
        let json_answer = "{\"name\": \"Ada\", \"born\": 1815}";
        let (text, calls, _) = run(CallFormat::Generic, &[json_answer]);
        assert_eq!((text.as_str(), calls.len()), (json_answer, 0));
        let (text, calls, _) = run(
            CallFormat::Generic,
            &["{\"tool_calls\": [{\"function\": {\"name\": \"get_weather\", \"arguments\": {}}}]}"],
        );
        assert_eq!((text.as_str(), calls[0].arguments.as_str()), ("", "{}"));
        // Text first: a later brace is only text.
        let (text, calls, _) = run(
            CallFormat::Generic,
            &["Here: ", "{\"name\": \"get_weather\"}"],
        );
        assert_eq!(
            (text.as_str(), calls.len()),
            ("Here: {\"name\": \"get_weather\"}", 0)
        );
    }

    #[test]
    fn grammars_name_only_the_offered_tools() {
        let mut tools = weather();
        tools.push(ToolDefinition {
            name: "odd\"name\\".into(),
            description: String::new(),
            parameters: serde_json::json!({}),
        });
        let grammar = CallFormat::Hermes.grammar(&tools).unwrap();
        assert!(
            grammar.contains(r#"name ::= "\"get_weather\"" | "\"odd\\\"name\\\\\"""#),
            "{grammar}"
        );
        assert!(CallFormat::Generic.grammar(&tools).is_none());
        assert!(CallFormat::Hermes.grammar(&[]).is_none());
    }

    #[test]
    fn a_template_without_tools_is_taught_them() {
        let message = |role: &'static str, content: &str| PromptMessage {
            role,
            content: content.into(),
            images: Vec::new(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        };
        let mut asked = message("assistant", "");
        asked.tool_calls = vec![ToolCall {
            id: "c1".into(),
            name: "get_weather".into(),
            arguments: r#"{"city":"Paris"}"#.into(),
        }];
        let mut result = message("tool", "sunny");
        result.tool_call_id = Some("c1".into());
        let taught = taught(
            &[
                message("system", "Be brief."),
                message("user", "Weather?"),
                asked,
                result.clone(),
                result,
            ],
            &weather(),
        );
        let roles: Vec<_> = taught.iter().map(|m| m.role).collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        assert!(taught[0].content.starts_with("Be brief.\n\n# Tools"));
        // Python's JSON separators, as the models were shown tools in training.
        assert!(taught[0].content.contains(r#""name": "get_weather""#));
        assert_eq!(
            taught[2].content,
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"
        );
        assert_eq!(
            taught[3].content,
            "<tool_response>\nsunny\n</tool_response>\n<tool_response>\nsunny\n</tool_response>"
        );
    }
}
