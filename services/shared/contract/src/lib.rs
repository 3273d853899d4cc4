//! The legacy member contract (`legacy-member-api.md`) as code: Rails-style parameter
//! parsing, the member fields' validation rules and messages, and the JSON rendering that
//! app clients observe. The identity service and the legacy simulator both use this crate,
//! so that the two cannot drift apart; the real Rails app stays the independent oracle.

pub mod auth;
pub mod errors;
pub mod exchange;
pub mod fields;
pub mod forms;
pub mod headers;
pub mod params;
pub mod render;
pub mod routes;
pub mod ruby;
pub mod time;
pub mod validation;

pub use errors::ContractError;
pub use fields::{Email, Nickname, Password, PhoneNumber, ProfileImageUrl};
pub use params::{Params, parse_body, parse_query};
pub use render::{MemberView, json_response_body};
pub use routes::{Endpoint, route};
pub use time::Timestamp;
pub use validation::{Errors, Field, Rule};
