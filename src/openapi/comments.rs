//! Proto comments, for descriptions: a descriptor set made with source info
//! (`protoc --include_source_info`, or `.proto` files the gateway compiles itself) keeps each
//! element's leading comment under its path in the file.

use std::collections::HashMap;

use prost_reflect::FileDescriptor;

/// The comments of the files looked at so far, by file and element path.
#[derive(Default)]
pub(super) struct Comments {
    files: HashMap<String, HashMap<Vec<i32>, String>>,
}

impl Comments {
    /// The comment of the element at `path` in `file`: its leading comment, else its trailing
    /// one, trimmed; `None` when it has none (or the file kept no source info).
    pub(super) fn of(&mut self, file: FileDescriptor, path: &[i32]) -> Option<&str> {
        let comments = self.files.entry(file.name().to_owned()).or_insert_with(|| index(&file));
        comments.get(path).map(String::as_str)
    }
}

fn index(file: &FileDescriptor) -> HashMap<Vec<i32>, String> {
    let proto = file.file_descriptor_proto();
    let Some(info) = &proto.source_code_info else { return HashMap::new() };
    info.location
        .iter()
        .filter_map(|location| {
            let text = location.leading_comments.as_deref().or(location.trailing_comments.as_deref())?;
            let text = tidy(text);
            (!text.is_empty()).then(|| (location.path.clone(), text))
        })
        .collect()
}

/// A comment's lines without the space each starts with, joined as one paragraph per blank line.
fn tidy(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(|line| line.strip_prefix(' ').unwrap_or(line).trim_end()).collect();
    lines.join("\n").trim().to_owned()
}
