//! Custom resources: the server serves any CRD it is given (here the made-up
//! `widgets.example.com`), validating, defaulting and discovering its objects.

use kube::Discovery;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use crate::fixture::{api_code, server, widget, widgets};

#[tokio::test]
async fn custom_objects_are_validated_against_their_crd_schema() {
    let (_s, client) = server().await;
    let widgets = widgets(client);
    let e = widgets
        .create(&PostParams::default(), &widget("w", json!({"size": 0})))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = e else {
        panic!("expected an API error, got {e:?}")
    };
    assert_eq!(status.code, 422);
    assert!(status.message.contains("spec.size"), "{}", status.message);
    let e = widgets
        .create(&PostParams::default(), &widget("w", json!({"size": 100})))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = e else {
        panic!("expected an API error, got {e:?}")
    };
    assert!(
        status.message.contains("size must be below 100"),
        "CEL rules apply: {}",
        status.message
    );
    let e = widgets
        .create(
            &PostParams::default(),
            &widget("w", json!({"color": "red"})),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&e).0, 422, "required fields are required");
    let created = widgets
        .create(
            &PostParams::default(),
            &widget("w", json!({"size": 3, "junk": 1})),
        )
        .await
        .unwrap();
    assert_eq!(
        created.data["spec"],
        json!({"size": 3, "color": "blue"}),
        "defaulted and pruned"
    );
}

#[tokio::test]
async fn discovery_finds_builtin_and_custom_groups() {
    let (_s, client) = server().await;
    let discovery = Discovery::new(client).run().await.unwrap();
    let groups: Vec<String> = discovery.groups().map(|g| g.name().to_owned()).collect();
    for g in [
        "",
        "example.com",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "events.k8s.io",
    ] {
        assert!(groups.iter().any(|n| n == g), "{g} missing from {groups:?}");
    }
}

#[tokio::test]
async fn custom_objects_keep_their_generation_across_metadata_and_status_writes() {
    let (_s, client) = server().await;
    let widgets = widgets(client);
    widgets
        .create(&PostParams::default(), &widget("w", json!({"size": 3})))
        .await
        .unwrap();
    let labelled = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(labelled.metadata.generation, Some(1));
    let status = widgets
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"built": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(status.metadata.generation, Some(1));
    let respec = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 4}})),
        )
        .await
        .unwrap();
    assert_eq!(respec.metadata.generation, Some(2));
}
