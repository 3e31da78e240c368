//! Who may do what: a pure decision over the caller's identity and the request.

use crate::pki::Identity;
use edge_api::object::{Kind, Object};
use edge_api::wire::{ApiError, ErrorCode, Request};

/// What part of the store a permitted request may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Everything,
    /// A node agent: its own Node object and the pods bound to it.
    Node(String),
}

impl Scope {
    /// Whether an object is visible (readable, and writable where the request allows) in scope.
    pub fn covers(&self, obj: &Object) -> bool {
        match (self, obj) {
            (Scope::Everything, _) => true,
            (Scope::Node(n), Object::Pod(p)) => p.spec.node_name.as_deref() == Some(n.as_str()),
            (Scope::Node(n), Object::Node(node)) => &node.metadata.name == n,
            // Every agent's proxy routes to every service (read only: see `authorize`).
            (Scope::Node(_), Object::Service(_) | Object::Endpoints(_)) => true,
            (Scope::Node(_), _) => false,
        }
    }
}

fn forbidden(who: &Identity, what: &str) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, format!("{who:?} may not {what}"))
}

/// Decides whether `who` may make `req`, and within which scope.
pub fn authorize(who: &Identity, req: &Request) -> Result<Scope, ApiError> {
    match who {
        Identity::Admin { .. } => match req {
            Request::Join { .. } | Request::Heartbeat => Err(forbidden(who, "act as a node")),
            _ => Ok(Scope::Everything),
        },
        Identity::Node { name } => {
            let scope = Scope::Node(name.clone());
            let own_node = |kind: Kind, obj_name: &str| kind == Kind::Node && obj_name == name;
            match req {
                Request::Heartbeat | Request::WhoAmI | Request::GetBlob { .. } | Request::Members => Ok(scope),
                Request::Get { key } if key.kind == Kind::Pod || own_node(key.kind, &key.name) => Ok(scope),
                // Checked against the node's pods by the handler: only what they reference.
                Request::Get { key } if matches!(key.kind, Kind::ConfigMap | Kind::Secret) => Ok(scope),
                Request::List { kind: Kind::Pod, .. } | Request::Watch { kind: Kind::Pod, .. } => Ok(scope),
                Request::List { kind: Kind::Service | Kind::Endpoints, .. }
                | Request::Watch { kind: Kind::Service | Kind::Endpoints, .. } => Ok(scope),
                Request::Apply { object, .. } if own_node(object.kind(), &object.meta().name) => Ok(scope),
                Request::UpdateStatus { object } if matches!(object.kind(), Kind::Pod | Kind::Node) => Ok(scope),
                Request::Delete { key, .. } if key.kind == Kind::Pod => Ok(scope),
                _ => Err(forbidden(who, "make this request: a node may read only what is bound to it and write only its own status")),
            }
        }
        Identity::Server { .. } => Err(forbidden(who, "use the client API")),
        Identity::Anonymous => match req {
            Request::Join { .. } | Request::JoinServer { .. } => Ok(Scope::Everything),
            _ => Err(ApiError::new(
                ErrorCode::Unauthorized,
                "a client certificate signed by the cluster CA is required",
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_api::object::ObjectKey;

    fn node(n: &str) -> Identity {
        Identity::Node { name: n.into() }
    }

    #[test]
    fn nodes_are_confined() {
        let get_pod = Request::Get {
            key: ObjectKey::new(Kind::Pod, "default", "p"),
        };
        assert_eq!(authorize(&node("a"), &get_pod), Ok(Scope::Node("a".into())));
        let get_other_node = Request::Get {
            key: ObjectKey::new(Kind::Node, "", "b"),
        };
        assert!(authorize(&node("a"), &get_other_node).is_err());
        let list_nodes = Request::List {
            kind: Kind::Node,
            namespace: None,
            selector: None,
        };
        assert!(authorize(&node("a"), &list_nodes).is_err());
        let put = Request::PutBlob { data: vec![] };
        assert!(authorize(&node("a"), &put).is_err());
    }

    #[test]
    fn only_admins_update() {
        let update = Request::Update {
            object: Object::Pod(edge_api::Pod::default()),
        };
        let admin = Identity::Admin { user: "a".into() };
        assert_eq!(authorize(&admin, &update), Ok(Scope::Everything));
        let e = authorize(&node("a"), &update).unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
    }

    #[test]
    fn nodes_read_services_and_endpoints_but_do_not_write_them() {
        for kind in [Kind::Service, Kind::Endpoints] {
            let list = Request::List {
                kind,
                namespace: None,
                selector: None,
            };
            assert_eq!(authorize(&node("a"), &list), Ok(Scope::Node("a".into())));
            let watch = Request::Watch {
                kind,
                namespace: None,
                selector: None,
                resource_version: None,
            };
            assert!(authorize(&node("a"), &watch).is_ok());
        }
        let svc = Object::Service(edge_api::Service::default());
        assert!(Scope::Node("a".into()).covers(&svc));
        let apply = Request::Apply {
            object: svc.clone(),
            dry_run: false,
        };
        assert!(authorize(&node("a"), &apply).is_err());
        assert!(authorize(&node("a"), &Request::UpdateStatus { object: svc }).is_err());
        let delete = Request::Delete {
            key: ObjectKey::new(Kind::Endpoints, "default", "web"),
            force: false,
            propagation: Default::default(),
        };
        assert!(authorize(&node("a"), &delete).is_err());
    }

    #[test]
    fn scope_filters_pods_by_binding() {
        let mut p = edge_api::Pod::default();
        p.spec.node_name = Some("a".into());
        let obj = Object::Pod(p);
        assert!(Scope::Node("a".into()).covers(&obj));
        assert!(!Scope::Node("b".into()).covers(&obj));
        assert!(Scope::Everything.covers(&obj));
    }

    #[test]
    fn anonymous_may_only_join() {
        let who = Identity::Anonymous;
        assert!(authorize(
            &who,
            &Request::Join {
                secret: "s".into(),
                node_name: "n".into()
            }
        )
        .is_ok());
        let e = authorize(&who, &Request::WhoAmI).unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthorized);
        assert!(authorize(&Identity::Server { name: "s".into() }, &Request::WhoAmI).is_err());
    }
}
