//! The JSON form of the syntax tree printed by
//! `strata dockerfile parse --json`.

use serde_json::{json, Value};

use super::{Dockerfile, Node};

/// The tree as a JSON list, one object per instruction:
/// `{"line", "end_line", "instruction", "flags", "args", "json_form",
/// "heredocs", "sub"}`.
pub fn ast_json(df: &Dockerfile) -> Value {
    Value::Array(df.nodes.iter().map(node_json).collect())
}

/// One instruction as JSON (ONBUILD's trigger nests in `sub`).
pub fn node_json(n: &Node) -> Value {
    let heredocs: Vec<Value> = n
        .heredocs
        .iter()
        .map(|h| {
            json!({
                "name": h.name,
                "content": h.content,
                "expand": h.expand,
                "chomp": h.chomp,
            })
        })
        .collect();
    json!({
        "line": n.start_line,
        "end_line": n.end_line,
        "instruction": n.keyword,
        "flags": n.flags,
        "args": n.args,
        "json_form": n.json,
        "heredocs": heredocs,
        "sub": n.sub.as_deref().map(node_json),
    })
}
