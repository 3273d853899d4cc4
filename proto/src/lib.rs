//! Generated code of the `identity.v1` gRPC contract (`proto/identity/v1/identity.proto`).

/// `identity.v1`: messages, client and server.
pub mod identity {
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("identity.v1");
    }
}

/// The encoded file descriptor set, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("identity_descriptor");
