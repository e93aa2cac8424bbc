//! How the CLI prints what it gets: a table for people, JSON or YAML for scripts (`-o`).

use serde::Serialize;

/// The output format (`-o`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Columns for people.
    #[default]
    Table,
    /// JSON, one document.
    Json,
    /// YAML, one document.
    Yaml,
}

/// Renders `value` in `format`; `table` builds the table form.
pub fn render<T: Serialize>(
    format: Format,
    value: &T,
    table: impl FnOnce(&T) -> comfy_table::Table,
) -> Result<String, String> {
    match format {
        Format::Table => Ok(table(value).to_string()),
        Format::Json => serde_json::to_string_pretty(value).map_err(|err| err.to_string()),
        Format::Yaml => serde_yaml::to_string(value).map_err(|err| err.to_string()),
    }
}

/// What a command that changes something says: `sentence` for people, `value` (the record
/// the server answered with, or what was done) as JSON or YAML for scripts.
pub fn render_outcome<T: Serialize>(
    format: Format,
    sentence: &str,
    value: &T,
) -> Result<String, String> {
    match format {
        Format::Table => Ok(sentence.to_string()),
        Format::Json | Format::Yaml => render(format, value, |_| comfy_table::Table::new()),
    }
}

/// A table with `header`, in the plain style of kubectl.
pub fn table(header: &[&str]) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_header(header.iter().map(|name| name.to_uppercase()));
    table
}

/// One line for a payload in a table: compact JSON, cut to `width` characters.
pub fn short_json(value: &serde_json::Value, width: usize) -> String {
    if value.is_null() {
        return String::new();
    }
    let text = value.to_string();
    if text.chars().count() <= width {
        return text;
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}
