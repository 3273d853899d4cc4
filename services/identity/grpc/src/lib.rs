//! The gRPC API `identity.v1` for the other microservices: the same flows and rules as
//! the REST surface, with proper status codes (`INVALID_ARGUMENT` carrying
//! `google.rpc.BadRequest` field violations, `ALREADY_EXISTS`, `NOT_FOUND`,
//! `UNAUTHENTICATED`, `RESOURCE_EXHAUSTED` with `google.rpc.RetryInfo`), and the stream
//! of member changes other services keep their caches by.

mod changes;
mod convert;
mod service;

pub use service::{GrpcService, GrpcSettings, Observer};

use identity_proto::identity::v1::identity_service_server::IdentityServiceServer;

/// A status code's name as metrics label it (`Ok`, `NotFound`, ...: its `Debug` form).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "Ok",
        Code::Cancelled => "Cancelled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The tonic service, ready to add to a server.
pub fn identity_service(service: GrpcService) -> IdentityServiceServer<GrpcService> {
    IdentityServiceServer::new(service)
}

/// gRPC server reflection (v1 and v1alpha), so that grpcurl works without the .proto.
pub fn reflection_services() -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    tonic_reflection::server::Error,
> {
    let v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(identity_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(identity_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    Ok((v1, v1alpha))
}

#[cfg(test)]
mod tests {
    #[test]
    fn code_names_are_the_debug_names() {
        for n in 0..=16 {
            let code = tonic::Code::from_i32(n);
            assert_eq!(super::code_name(code), format!("{code:?}"));
        }
    }
}
