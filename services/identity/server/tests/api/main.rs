//! Integration tests of the identity service over real sockets, each on SQLite and on
//! PostgreSQL. One test binary (each file under `tests/` is another binary to link).

mod grpc_client;
mod support;

mod changes;
mod grpc;
mod introspection;
mod migration;
mod process;
mod rest;
