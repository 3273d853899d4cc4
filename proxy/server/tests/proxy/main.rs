//! The migration proxy over real sockets, in front of the real legacy simulator and the
//! real identity service (each on its own SQLite file). One test binary.

mod support;

mod dashboard;
mod drain;
mod guard;
mod reload;
mod shadow;
mod sides;
mod split;
