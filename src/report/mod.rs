//! Reporting: turning plans, action outcomes and observations into what users read — CLI
//! lines, the `diff` listing, `get` tables. Status, events and metrics join here later.

mod get;
mod lines;

pub use get::{render_get, render_status, GetFormat, ManagedRow};
pub use lines::{action_line, plan_text, short_id, summary_text};
