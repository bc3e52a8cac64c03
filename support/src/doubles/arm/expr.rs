//! ARM template language expressions, evaluated the way ARM does for the functions the double
//! knows (`resourceId`, `subscriptionResourceId`, `resourceGroup`, `subscription`, `parameters`,
//! `variables`, `concat`, `base64`, `guid`, `reference`, property access). Any other function is
//! refused with `InvalidTemplate`, so a template using one fails here as it would not silently
//! pass. Source: learn.microsoft.com, "Template functions" (ARM template reference).

use serde_json::{json, Map, Value};

use super::{resource_id, State, SUBSCRIPTION, TENANT};

pub(super) struct Context<'a> {
    pub(super) state: &'a State,
    pub(super) group: &'a str,
    pub(super) group_location: &'a Value,
    pub(super) template: &'a Value,
    pub(super) parameters: &'a Value,
}

impl Context<'_> {
    /// Evaluates every expression string inside a value.
    pub(super) fn eval_value(&self, value: &Value) -> Result<Value, String> {
        Ok(match value {
            Value::String(s) if s.starts_with('[') && s.ends_with(']') && !s.starts_with("[[") => {
                let mut parser = Parser {
                    text: &s[1..s.len() - 1],
                    pos: 0,
                };
                let expr = parser.expression()?;
                parser.skip_ws();
                if parser.pos != parser.text.len() {
                    return Err(format!("The template language expression '{s}' is not valid: unexpected text at {}", parser.pos));
                }
                self.eval(&expr)?
            }
            Value::String(s) if s.starts_with("[[") => Value::String(s[1..].to_string()),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| self.eval_value(i))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, v) in map {
                    out.insert(k.clone(), self.eval_value(v)?);
                }
                Value::Object(out)
            }
            other => other.clone(),
        })
    }

    fn eval(&self, expr: &Expr) -> Result<Value, String> {
        match expr {
            Expr::Str(s) => Ok(json!(s)),
            Expr::Int(i) => Ok(json!(i)),
            Expr::Member(inner, name) => {
                let v = self.eval(inner)?;
                v.get(name).cloned().ok_or_else(|| {
                    format!("The template language expression property '{name}' doesn't exist")
                })
            }
            Expr::Call(name, args) => {
                let values = args
                    .iter()
                    .map(|a| self.eval(a))
                    .collect::<Result<Vec<_>, _>>()?;
                let text = |i: usize| -> Result<String, String> {
                    values
                        .get(i)
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| {
                            format!("The template function '{name}' expects a string argument {i}")
                        })
                };
                match name.to_ascii_lowercase().as_str() {
                    "resourceid" => {
                        let kind = text(0)?;
                        let names: Vec<String> = (1..values.len()).map(&text).collect::<Result<_, _>>()?;
                        let names: Vec<&str> = names.iter().map(String::as_str).collect();
                        Ok(json!(resource_id(self.group, &kind, &names)))
                    }
                    "subscriptionresourceid" => {
                        let kind = text(0)?;
                        let mut parts = kind.split('/');
                        let ns = parts.next().unwrap_or("");
                        let mut id = format!("/subscriptions/{SUBSCRIPTION}/providers/{ns}");
                        for (i, t) in parts.enumerate() {
                            id.push_str(&format!("/{t}/{}", text(i + 1)?));
                        }
                        Ok(json!(id))
                    }
                    "resourcegroup" => Ok(json!({
                        "id": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{}", self.group),
                        "name": self.group,
                        "location": self.group_location,
                    })),
                    "subscription" => Ok(json!({
                        "id": format!("/subscriptions/{SUBSCRIPTION}"),
                        "subscriptionId": SUBSCRIPTION,
                        "tenantId": TENANT,
                    })),
                    "parameters" => {
                        let p = text(0)?;
                        let given = &self.parameters[&p]["value"];
                        if !given.is_null() {
                            return Ok(given.clone());
                        }
                        self.template["parameters"][&p]
                            .get("defaultValue")
                            .cloned()
                            .ok_or_else(|| format!("The template parameter '{p}' is not found."))
                    }
                    "variables" => {
                        let v = text(0)?;
                        let raw = self.template["variables"]
                            .get(&v)
                            .ok_or_else(|| format!("The template variable '{v}' is not found."))?;
                        self.eval_value(raw)
                    }
                    "concat" => {
                        if values.iter().all(Value::is_string) {
                            Ok(json!(values.iter().filter_map(Value::as_str).collect::<String>()))
                        } else {
                            Err("The template function 'concat' is used with arguments of mixed types in the double.".into())
                        }
                    }
                    "not" => match values.first() {
                        Some(Value::Bool(b)) => Ok(json!(!b)),
                        _ => Err("The template function 'not' expects a boolean argument.".into()),
                    },
                    // ARM's string functions ("Template functions - string").
                    "tolower" => Ok(json!(text(0)?.to_lowercase())),
                    "base64" => {
                        use base64::Engine;
                        Ok(json!(base64::engine::general_purpose::STANDARD.encode(text(0)?)))
                    }
                    "guid" => {
                        use sha2::Digest;
                        let joined: Vec<String> = (0..values.len()).map(&text).collect::<Result<_, _>>()?;
                        let hash = crate::hash::hex(&sha2::Sha256::digest(joined.join("-").as_bytes()));
                        Ok(json!(format!("{}-{}-{}-{}-{}", &hash[0..8], &hash[8..12], &hash[12..16], &hash[16..20], &hash[20..32])))
                    }
                    "reference" => {
                        let id = text(0)?;
                        let full = values.get(2).and_then(Value::as_str) == Some("full");
                        let stored = self
                            .state
                            .resources
                            .get(&id.to_ascii_lowercase())
                            .ok_or_else(|| format!("The Resource '{id}' was not found (reference())."))?;
                        Ok(if full {
                            stored.value.clone()
                        } else {
                            stored.value["properties"].clone()
                        })
                    }
                    _ => Err(format!("The template function '{name}' is not valid (not known to the ARM double).")),
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Expr {
    Str(String),
    Int(i64),
    Call(String, Vec<Expr>),
    Member(Box<Expr>, String),
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expression(&mut self) -> Result<Expr, String> {
        self.skip_ws();
        let mut expr = match self.peek() {
            Some('\'') => {
                self.pos += 1;
                let mut s = String::new();
                loop {
                    let c = self.peek().ok_or("unterminated string in expression")?;
                    self.pos += c.len_utf8();
                    if c == '\'' {
                        if self.peek() == Some('\'') {
                            self.pos += 1;
                            s.push('\'');
                        } else {
                            break;
                        }
                    } else {
                        s.push(c);
                    }
                }
                Expr::Str(s)
            }
            Some(c) if c.is_ascii_digit() || c == '-' => {
                let start = self.pos;
                self.pos += 1;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.pos += 1;
                }
                Expr::Int(
                    self.text[start..self.pos]
                        .parse()
                        .map_err(|_| "bad number")?,
                )
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let name = self.identifier();
                if !self.eat('(') {
                    return Err(format!("'{name}' must be a function call"));
                }
                let mut args = Vec::new();
                if !self.eat(')') {
                    loop {
                        args.push(self.expression()?);
                        if self.eat(')') {
                            break;
                        }
                        if !self.eat(',') {
                            return Err(format!("expected ',' or ')' in the arguments of {name}"));
                        }
                    }
                }
                Expr::Call(name, args)
            }
            other => return Err(format!("unexpected {other:?} in expression")),
        };
        while self.eat('.') {
            let name = self.identifier();
            if name.is_empty() {
                return Err("expected a property name after '.'".into());
            }
            expr = Expr::Member(Box::new(expr), name);
        }
        Ok(expr)
    }

    fn identifier(&mut self) -> String {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.pos += 1;
        }
        self.text[start..self.pos].to_string()
    }
}
