//! Random sequences of lifecycle actions against a real server (SQLite) and a simple model:
//! the server must agree with the model on every token after every step, never have more than
//! two live tokens, and never authorize a revoked token again.

mod common;

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use common::{Backend, TestApp, authorize, create, deny_reason};
use privint::grpc::pb;
use proptest::prelude::*;
use tonic::Code;

#[derive(Debug, Clone)]
enum Action {
    RotateNow,
    RotateGrace(i64),
    CancelRotation,
    ExpirePrevious,
    ExpireAll,
    ScheduleExpiry(Option<i64>),
    Advance(i64),
    Delete,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => Just(Action::RotateNow),
        4 => (1i64..120).prop_map(Action::RotateGrace),
        2 => Just(Action::CancelRotation),
        2 => Just(Action::ExpirePrevious),
        1 => Just(Action::ExpireAll),
        2 => prop::option::of(1i64..120).prop_map(Action::ScheduleExpiry),
        4 => (0i64..150).prop_map(Action::Advance),
        1 => Just(Action::Delete),
    ]
}

/// What the model expects Authorize to say of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Allow { previous: bool },
    Expired,
    Revoked,
}

struct ModelToken {
    secret: String,
    expire: Option<DateTime<Utc>>,
    revoked: Option<DateTime<Utc>>,
}

/// The lifecycle (create, update, rotate, cancel, expire, schedule, delete), written as plainly as possible.
struct Model {
    now: DateTime<Utc>,
    tokens: Vec<ModelToken>,
    current: Option<usize>,
    previous: Option<usize>,
    deleted: bool,
}

impl Model {
    fn live(&self, index: usize) -> bool {
        let token = &self.tokens[index];
        token.revoked.is_none() && token.expire.is_none_or(|expire| self.now < expire)
    }

    fn live_previous(&self) -> bool {
        self.previous.is_some_and(|index| self.live(index))
    }

    fn revoke(&mut self, index: usize) {
        let now = self.now;
        self.tokens[index].revoked.get_or_insert(now);
    }

    fn expect(&self, index: usize) -> Expect {
        let token = &self.tokens[index];
        match (token.expire, token.revoked) {
            // Whichever ended the token first names the reason.
            (Some(expire), revoked)
                if expire <= self.now && revoked.is_none_or(|revoked| expire <= revoked) =>
            {
                Expect::Expired
            }
            (_, Some(_)) => Expect::Revoked,
            _ => Expect::Allow {
                previous: self.previous == Some(index),
            },
        }
    }

    /// Applies `action`; returns the status code the server must answer (`Ok` for success).
    fn apply(&mut self, action: &Action, new_token: Option<String>) -> Code {
        if self.deleted && !matches!(action, Action::Advance(_)) {
            return Code::NotFound;
        }
        match action {
            Action::RotateNow | Action::RotateGrace(_) => {
                if self.live_previous() {
                    return Code::FailedPrecondition;
                }
                let old = self.current.take();
                self.previous = None;
                self.tokens.push(ModelToken {
                    secret: new_token.expect("a rotation issues a token"),
                    expire: None,
                    revoked: None,
                });
                self.current = Some(self.tokens.len() - 1);
                if let Some(old) = old {
                    match action {
                        Action::RotateGrace(minutes) if self.live(old) => {
                            let grace_end = self.now + Duration::minutes(*minutes);
                            let expire = self.tokens[old]
                                .expire
                                .map_or(grace_end, |it| it.min(grace_end));
                            self.tokens[old].expire = Some(expire);
                            self.previous = Some(old);
                        }
                        Action::RotateGrace(_) => {}
                        _ => self.revoke(old),
                    }
                }
            }
            Action::CancelRotation => {
                if !self.live_previous() {
                    return Code::FailedPrecondition;
                }
                if let Some(current) = self.current {
                    self.revoke(current);
                }
                let previous = self.previous.take().expect("live previous");
                self.tokens[previous].expire = None;
                self.current = Some(previous);
            }
            Action::ExpirePrevious => {
                if !self.live_previous() {
                    return Code::FailedPrecondition;
                }
                let previous = self.previous.take().expect("live previous");
                self.revoke(previous);
            }
            Action::ExpireAll => {
                let slots: Vec<usize> =
                    self.current.iter().chain(&self.previous).copied().collect();
                if !slots.iter().any(|index| self.live(*index)) {
                    return Code::FailedPrecondition;
                }
                for index in slots {
                    if self.live(index) {
                        self.revoke(index);
                    }
                }
                self.current = None;
                self.previous = None;
            }
            Action::ScheduleExpiry(minutes) => {
                let Some(current) = self.current.filter(|index| self.live(*index)) else {
                    return Code::FailedPrecondition;
                };
                self.tokens[current].expire =
                    minutes.map(|minutes| self.now + Duration::minutes(minutes));
            }
            Action::Advance(minutes) => self.now += Duration::minutes(*minutes),
            Action::Delete => {
                let slots: Vec<usize> =
                    self.current.iter().chain(&self.previous).copied().collect();
                for index in slots {
                    self.revoke(index);
                }
                self.current = None;
                self.previous = None;
                self.deleted = true;
            }
        }
        Code::Ok
    }
}

async fn run(actions: Vec<Action>) {
    let app = TestApp::spawn(Backend::Sqlite)
        .await
        .expect("sqlite is always available");
    let mut api = app.api().await;
    let (integration, token) = create(&mut api).await;
    let id = integration.id.clone();
    let mut model = Model {
        now: app_now(&app),
        tokens: vec![ModelToken {
            secret: token,
            expire: None,
            revoked: None,
        }],
        current: Some(0),
        previous: None,
        deleted: false,
    };
    let mut ever_revoked: HashSet<String> = HashSet::new();
    for (step, action) in actions.iter().enumerate() {
        let result: Result<Option<String>, tonic::Status> = match action {
            Action::RotateNow | Action::RotateGrace(_) => {
                let grace_period = match action {
                    Action::RotateGrace(minutes) => Some(prost_types::Duration {
                        seconds: minutes * 60,
                        nanos: 0,
                    }),
                    _ => None,
                };
                let expire_old_now = matches!(action, Action::RotateNow);
                let request = pb::RotateTokenRequest {
                    id: id.clone(),
                    expire_old_now,
                    grace_period,
                    etag: String::new(),
                };
                api.rotate_token(request)
                    .await
                    .map(|it| Some(it.into_inner().token))
            }
            Action::CancelRotation => api
                .cancel_rotation(pb::CancelRotationRequest {
                    id: id.clone(),
                    etag: String::new(),
                })
                .await
                .map(|_| None),
            Action::ExpirePrevious | Action::ExpireAll => {
                let target = if matches!(action, Action::ExpireAll) {
                    pb::ExpireTarget::All
                } else {
                    pb::ExpireTarget::Previous
                };
                let request = pb::ExpireTokenRequest {
                    id: id.clone(),
                    target: target.into(),
                    etag: String::new(),
                };
                api.expire_token(request).await.map(|_| None)
            }
            Action::ScheduleExpiry(minutes) => {
                let expire_time = minutes.map(|minutes| {
                    let at = model.now + Duration::minutes(minutes);
                    prost_types::Timestamp {
                        seconds: at.timestamp(),
                        nanos: at.timestamp_subsec_nanos() as i32,
                    }
                });
                let request = pb::ScheduleTokenExpiryRequest {
                    id: id.clone(),
                    expire_time,
                    etag: String::new(),
                };
                api.schedule_token_expiry(request).await.map(|_| None)
            }
            Action::Advance(minutes) => {
                app.advance(Duration::minutes(*minutes));
                Ok(None)
            }
            Action::Delete => api
                .delete_integration(pb::DeleteIntegrationRequest {
                    id: id.clone(),
                    etag: String::new(),
                })
                .await
                .map(|_| None),
        };
        let (code, new_token) = match result {
            Ok(new_token) => (Code::Ok, new_token),
            Err(status) => (status.code(), None),
        };
        let expected = model.apply(action, new_token);
        assert_eq!(code, expected, "step {step}: {action:?} in {actions:?}");

        let mut live = 0;
        for index in 0..model.tokens.len() {
            let secret = model.tokens[index].secret.clone();
            let response = authorize(&app, &secret, &["contacts.readonly"]).await;
            let actual = match deny_reason(&response) {
                None => Expect::Allow {
                    previous: response.previous_token,
                },
                Some(pb::DenyReason::ExpiredToken) => Expect::Expired,
                Some(pb::DenyReason::RevokedToken) => Expect::Revoked,
                Some(other) => panic!("step {step}: unexpected {other:?}"),
            };
            assert_eq!(
                actual,
                model.expect(index),
                "step {step}: token {index} after {action:?} in {actions:?}"
            );
            match actual {
                Expect::Allow { .. } => {
                    live += 1;
                    assert!(
                        !ever_revoked.contains(&secret),
                        "a revoked token authorized again"
                    );
                }
                Expect::Revoked => {
                    ever_revoked.insert(secret);
                }
                Expect::Expired => {}
            }
        }
        assert!(live <= 2, "step {step}: {live} live tokens");
    }
}

fn app_now(app: &TestApp) -> DateTime<Utc> {
    use privint::clock::Clock;
    app.clock.now()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_lifecycles_match_the_model(actions in prop::collection::vec(action(), 1..14)) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        runtime.block_on(run(actions));
    }
}
