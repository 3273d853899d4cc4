//! What the gRPC tests share: a client of a running service, a member's sign-up, its
//! access token, and a request carrying that token.

use std::net::SocketAddr;

use identity_proto::identity::v1 as pb;
use identity_proto::identity::v1::identity_service_client::IdentityServiceClient;
use tonic::transport::Channel;

use crate::support::TestApp;

/// The password of every member `sign_up` makes.
pub const PASSWORD: &str = "password123";
/// The nickname of every member `sign_up` makes.
pub const NICKNAME: &str = "grpc";

/// A client on a connection of its own to the gRPC address `addr`.
pub async fn connect(addr: SocketAddr) -> IdentityServiceClient<Channel> {
    IdentityServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("gRPC connects")
}

/// A client on a connection of its own to `app`.
pub async fn client(app: &TestApp) -> IdentityServiceClient<Channel> {
    connect(app.grpc).await
}

/// The sign-up of `email`, with `PASSWORD` and `NICKNAME`.
pub fn sign_up(email: &str) -> pb::SignUpRequest {
    pb::SignUpRequest {
        email: email.into(),
        password: PASSWORD.into(),
        nickname: NICKNAME.into(),
        ..Default::default()
    }
}

/// An access token of the member `sign_up(email)` made, from a new session.
pub async fn access_token(c: &mut IdentityServiceClient<Channel>, email: &str) -> String {
    c.authenticate(pb::AuthenticateRequest {
        email: email.into(),
        password: PASSWORD.into(),
    })
    .await
    .expect("the member authenticates")
    .into_inner()
    .session
    .expect("a session")
    .access_token
}

/// `msg` sent with `token` as its bearer.
pub fn bearer<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}
