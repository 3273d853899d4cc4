//! The hostile-client suite lives in `tests/hostile`: each test is an attack (or an
//! unlucky coincidence) named after what it does, run over real sockets against the
//! real binaries (`migration-proxy`, `identity`, `legacy-sim`) started as processes,
//! and, where the legacy matters, against the Rails app (`HOSTILE_LEGACY_URL` and
//! `HOSTILE_LEGACY_DATABASE_URL`, as `tests/run.sh` sets them).
