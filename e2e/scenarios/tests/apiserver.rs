//! ferrolb's CRDs in the test API server, through kube-rs: the server's generic behaviour is
//! tested in its own crate (e2e/apiserver/tests); here only what ferrolb's CRDs bring.
#![allow(clippy::unwrap_used)]

use ferrolb_api::IPAddressPool;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Discovery};
use serde_json::json;
use test_apiserver::{ApiServer, ServerConfig};

async fn server() -> (ApiServer, Client) {
    let server = ApiServer::start(ServerConfig::default()).await.unwrap();
    ferrolb_lab::register_ferrolb_crds(&server).unwrap();
    let kubeconfig = Kubeconfig::from_yaml(&server.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    (server, Client::try_from(config).unwrap())
}

fn pool(addresses: serde_json::Value) -> IPAddressPool {
    serde_json::from_value(json!({
        "apiVersion": "ferrolb.io/v1beta1", "kind": "IPAddressPool",
        "metadata": {"name": "p"}, "spec": {"addresses": addresses},
    }))
    .unwrap()
}

#[tokio::test]
async fn an_invalid_pool_is_refused_naming_the_value_and_a_valid_one_defaulted() {
    let (_s, client) = server().await;
    let pools: Api<IPAddressPool> = Api::namespaced(client, "default");
    let e = pools
        .create(&PostParams::default(), &pool(json!(["192.0.2.7"])))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = e else {
        panic!("expected an API error, got {e:?}")
    };
    assert_eq!(status.code, 422);
    assert!(status.message.contains("192.0.2.7"), "{}", status.message);
    let e = pools
        .create(&PostParams::default(), &pool(json!([])))
        .await
        .unwrap_err();
    assert!(
        matches!(e, kube::Error::Api(s) if s.code == 422),
        "an empty pool is refused"
    );
    let created = pools
        .create(&PostParams::default(), &pool(json!(["192.0.2.0/24"])))
        .await
        .unwrap();
    assert!(created.spec.auto_assign, "defaults applied");
}

#[tokio::test]
async fn ferrolb_kinds_are_discovered() {
    let (_s, client) = server().await;
    let discovery = Discovery::new(client).run().await.unwrap();
    let ferrolb = discovery
        .groups()
        .find(|g| g.name() == "ferrolb.io")
        .expect("the ferrolb.io group is served");
    let kinds: Vec<String> = ferrolb
        .recommended_resources()
        .into_iter()
        .map(|(r, _)| r.kind)
        .collect();
    assert!(kinds.iter().any(|k| k == "IPAddressPool"), "{kinds:?}");
}
