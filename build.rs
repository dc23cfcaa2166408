//! Compiles `proto/privint/v1/*.proto` with protox (no system `protoc`) and writes the
//! descriptor set that server reflection serves.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/privint/v1/integrations.proto",
        "proto/privint/v1/authorizer.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("privint_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Messages that carry a token get a redacting `Debug` (see `grpc::pb`).
        .skip_debug([
            ".privint.v1.AuthorizeRequest",
            ".privint.v1.CreateIntegrationResponse",
            ".privint.v1.RotateTokenResponse",
        ])
        .compile_fds(descriptors)?;
    Ok(())
}
