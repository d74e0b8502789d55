//! Email: the words and their rendering (`render`, `welcome`, with the
//! templates embedded from `templates/`), how a message leaves (`transport`)
//! and the outbox sender that delivers each message once (`sender`).

pub mod render;
pub mod sender;
pub mod transport;
pub mod welcome;
