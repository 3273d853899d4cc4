//! Compiles `identity/v1/identity.proto` with protox (no system `protoc` needed).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["identity/v1/identity.proto"];
    let fds = protox::compile(files, ["."])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("identity_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    Ok(())
}
