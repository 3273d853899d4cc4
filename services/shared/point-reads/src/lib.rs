//! Point reads at the database's own speed: what the identity service's hot reads and
//! the legacy reads of every authenticated request while migrating share.
//! - [`Batcher`]: reads that arrive together are read together, in one query;
//! - [`keys_table`]: a batch's keys as one parameter, one prepared statement whatever the
//!   batch's size;
//! - [`ReadPool`] and [`rows_of!`]: a pool in PostgreSQL's or SQLite's own driver (the Any
//!   driver copies every column's description into every row: measured on a read of 100
//!   members, a tenth of the identity service's CPU went to those copies);
//! - [`Decodes`]: one row decoding for the Any driver's rows and both engines' own;
//! - [`again_while_lost`]: a read, or a transaction's start, that met a connection a
//!   database restart cut is run again on another (a restart costs a wait, not an error);
//! - [`serve_from_this_thread`]: a thread serving on a runtime of its own batches its
//!   reads there, and runs their queries where their pool's connections are driven.

mod again;
mod batcher;
mod keys;
mod pool;
mod rows;
mod serving;

pub use again::{again_while_lost, connection_lost};
pub use batcher::{BatchError, Batcher, Fetch};
pub use keys::{Engine, keys_table};
pub use pool::{ReadPool, Rows};
pub use rows::Decodes;
pub use serving::serve_from_this_thread;
pub(crate) use serving::serving_thread;
