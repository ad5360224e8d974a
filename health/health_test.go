package health

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

func obj(t *testing.T, y string) *unstructured.Unstructured {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(j); err != nil {
		t.Fatal(err)
	}
	return u
}

// judgeCases are objects in the states kstatus tells apart, with the
// verdict each must get.
var judgeCases = []struct {
	name, y, verdict, reason string
}{
	{"deployment available", `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, generation: 2}
spec: {replicas: 2, progressDeadlineSeconds: 600}
status:
  observedGeneration: 2
  replicas: 2
  updatedReplicas: 2
  readyReplicas: 2
  availableReplicas: 2
  conditions:
  - {type: Available, status: "True"}
  - {type: Progressing, status: "True", reason: NewReplicaSetAvailable}
`, Ready, ""},
	{"deployment past its deadline", `
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, generation: 1}
spec: {replicas: 1, progressDeadlineSeconds: 3}
status:
  observedGeneration: 1
  replicas: 1
  updatedReplicas: 1
  conditions:
  - {type: Progressing, status: "False", reason: ProgressDeadlineExceeded, message: 'ReplicaSet "api-7d9" has timed out progressing.'}
`, Failed, `ProgressDeadlineExceeded: ReplicaSet "api-7d9" has timed out progressing.`},
	{"deployment rolling out", `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, generation: 1}
spec: {replicas: 3}
status: {observedGeneration: 1, replicas: 3, updatedReplicas: 3, readyReplicas: 1, availableReplicas: 1}
`, Waiting, "Available: 1/3"},
	{"deployment not yet observed", `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, generation: 2}
spec: {replicas: 1}
status: {observedGeneration: 1, replicas: 1, updatedReplicas: 1, readyReplicas: 1, availableReplicas: 1}
`, Waiting, ""},
	{"job running", `
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec: {completions: 1}
status: {startTime: "2026-01-01T00:00:00Z", active: 1}
`, Waiting, "not complete"},
	{"job complete", `
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
status:
  startTime: "2026-01-01T00:00:00Z"
  succeeded: 1
  conditions: [{type: Complete, status: "True"}]
`, Ready, ""},
	{"job failed", `
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
status:
  startTime: "2026-01-01T00:00:00Z"
  failed: 1
  conditions: [{type: Failed, status: "True", reason: DeadlineExceeded, message: Job was active longer than specified deadline}]
`, Failed, "DeadlineExceeded: Job was active longer than specified deadline"},
	{"not waited", `
apiVersion: apps/v1
kind: Deployment
metadata: {name: bg, generation: 1, annotations: {cronsync.dev/wait: "false"}}
spec: {replicas: 1}
`, NotWaited, ""},
	{"custom resource without conditions", `
apiVersion: example.com/v1
kind: Widget
metadata: {name: w}
spec: {size: 1}
`, Ready, ""},
	{"custom resource stalled", `
apiVersion: example.com/v1
kind: Widget
metadata: {name: w, generation: 1}
status:
  observedGeneration: 1
  conditions: [{type: Ready, status: "False", reason: Broken, message: no widgets today}]
`, Waiting, "no widgets today"},
	{"terminating", `
apiVersion: v1
kind: ConfigMap
metadata: {name: c, deletionTimestamp: "2026-01-01T00:00:00Z"}
`, Waiting, "terminating"},
}

func TestJudge(t *testing.T) {
	for _, tc := range judgeCases {
		verdict, reason := Judge(obj(t, tc.y))
		if verdict != tc.verdict || !strings.Contains(reason, tc.reason) {
			t.Errorf("%s: got %s %q, want %s containing %q", tc.name, verdict, reason, tc.verdict, tc.reason)
		}
	}
}

func TestUnhealthyError(t *testing.T) {
	failed := &UnhealthyError{First: State{Object: Object{Ref: "deployment.apps/api -n shop", Source: "apps/api.yaml"}, Verdict: Failed, Reason: "ProgressDeadlineExceeded: slow"}}
	if got := failed.Error(); got != "deployment.apps/api -n shop (apps/api.yaml): not healthy: ProgressDeadlineExceeded: slow" {
		t.Errorf("got %q", got)
	}
	late := &UnhealthyError{First: State{Object: Object{Ref: "deployment.apps/web -n shop", Source: "web.yaml"}, Verdict: Waiting, Reason: "Available: 1/3"}, Waiting: 3, Timeout: 5e9}
	if got := late.Error(); got != "deployment.apps/web -n shop (web.yaml): not ready after 5s: Available: 1/3 (and 2 more objects not ready)" {
		t.Errorf("got %q", got)
	}
}

// TestJudgeSeenAgreesWithKstatus holds judgeSeen to its promise: for every
// Statusless kind, the metadata alone gives the verdict kstatus gives the
// whole object.
func TestJudgeSeenAgreesWithKstatus(t *testing.T) {
	kinds := map[schema.GroupResource]string{
		{Resource: "configmaps"}:                                                             "v1/ConfigMap",
		{Resource: "secrets"}:                                                                "v1/Secret",
		{Resource: "serviceaccounts"}:                                                        "v1/ServiceAccount",
		{Resource: "limitranges"}:                                                            "v1/LimitRange",
		{Resource: "podtemplates"}:                                                           "v1/PodTemplate",
		{Group: "rbac.authorization.k8s.io", Resource: "roles"}:                              "rbac.authorization.k8s.io/v1/Role",
		{Group: "rbac.authorization.k8s.io", Resource: "rolebindings"}:                       "rbac.authorization.k8s.io/v1/RoleBinding",
		{Group: "rbac.authorization.k8s.io", Resource: "clusterroles"}:                       "rbac.authorization.k8s.io/v1/ClusterRole",
		{Group: "rbac.authorization.k8s.io", Resource: "clusterrolebindings"}:                "rbac.authorization.k8s.io/v1/ClusterRoleBinding",
		{Group: "scheduling.k8s.io", Resource: "priorityclasses"}:                            "scheduling.k8s.io/v1/PriorityClass",
		{Group: "storage.k8s.io", Resource: "storageclasses"}:                                "storage.k8s.io/v1/StorageClass",
		{Group: "networking.k8s.io", Resource: "ingressclasses"}:                             "networking.k8s.io/v1/IngressClass",
		{Group: "node.k8s.io", Resource: "runtimeclasses"}:                                   "node.k8s.io/v1/RuntimeClass",
		{Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations"}: "admissionregistration.k8s.io/v1/ValidatingWebhookConfiguration",
		{Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations"}:   "admissionregistration.k8s.io/v1/MutatingWebhookConfiguration",
	}
	for gr := range statusless {
		if kinds[gr] == "" {
			t.Errorf("%s is Statusless but not tested here", gr)
		}
	}
	metas := map[string]string{
		"plain":         "name: x\n",
		"being deleted": "name: x\n  deletionTimestamp: \"2026-01-01T00:00:00Z\"\n  finalizers: [example.com/hold]\n",
		"not waited":    "name: x\n  annotations: {cronsync.dev/wait: \"false\"}\n",
	}
	for gr, kind := range kinds {
		if !Statusless(gr) {
			t.Errorf("%s is tested here but not Statusless", gr)
		}
		i := strings.LastIndex(kind, "/")
		for name, m := range metas {
			u := obj(t, "apiVersion: "+kind[:i]+"\nkind: "+kind[i+1:]+"\nmetadata:\n  "+m)
			wantV, _ := Judge(u)
			om := &metav1.ObjectMeta{Annotations: u.GetAnnotations(), DeletionTimestamp: u.GetDeletionTimestamp()}
			if gotV, _ := judgeSeen(om); gotV != wantV {
				t.Errorf("%s, %s: from its metadata %q, kstatus says %q", kind, name, gotV, wantV)
			}
		}
	}
}

// TestPageKeepsWhatKstatusReads decodes each of judgeCases, given the
// managedFields and pod template a live object carries, both as the
// dynamic client does and as a page of the wait's LIST: the two must be
// equal but for those two fields, and get the same verdict and reason.
func TestPageKeepsWhatKstatusReads(t *testing.T) {
	managed := []any{map[string]any{"manager": "cronsync", "operation": "Apply", "apiVersion": "v1",
		"fieldsType": "FieldsV1", "fieldsV1": map[string]any{"f:spec": map[string]any{"f:replicas": map[string]any{}}}}}
	template := map[string]any{"metadata": map[string]any{"labels": map[string]any{"app": "x"}},
		"spec": map[string]any{"containers": []any{map[string]any{"name": "app", "image": "example.invalid/app:1"}}}}
	var items []json.RawMessage
	var want []*unstructured.Unstructured
	for _, tc := range judgeCases {
		full := obj(t, tc.y)
		full.SetManagedFields(nil)
		if err := unstructured.SetNestedSlice(full.Object, managed, "metadata", "managedFields"); err != nil {
			t.Fatal(err)
		}
		if _, ok := full.Object["spec"].(map[string]any); ok {
			if err := unstructured.SetNestedMap(full.Object, template, "spec", "template"); err != nil {
				t.Fatal(err)
			}
		}
		b, err := full.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, b)
		// As the dynamic client would decode it.
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(b); err != nil {
			t.Fatal(err)
		}
		want = append(want, u)
	}
	body, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "metadata": map[string]any{"continue": "next"}, "items": items})
	if err != nil {
		t.Fatal(err)
	}
	var p page
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Metadata.Continue != "next" || len(p.Items) != len(judgeCases) {
		t.Fatalf("page: continue %q, %d items; want \"next\", %d", p.Metadata.Continue, len(p.Items), len(judgeCases))
	}
	got := p.objects()
	for i, tc := range judgeCases {
		got, full := got[i], want[i]
		wantV, wantR := Judge(full)
		if v, r := Judge(got); v != wantV || r != wantR {
			t.Errorf("%s: from the page %s %q, from the whole object %s %q", tc.name, v, r, wantV, wantR)
		}
		unstructured.RemoveNestedField(full.Object, "metadata", "managedFields")
		unstructured.RemoveNestedField(full.Object, "spec", "template")
		if !reflect.DeepEqual(got.Object, full.Object) {
			t.Errorf("%s: the page holds\n%v\nwant\n%v", tc.name, got.Object, full.Object)
		}
		if _, ok := got.Object["metadata"].(map[string]any)["managedFields"]; ok {
			t.Errorf("%s: managedFields decoded", tc.name)
		}
	}
}

// TestPageSetsTheItemsKind: the items of a built-in kind's list come
// without apiVersion and kind, and kstatus without a kind judges a
// Deployment that has not rolled out as ready.
func TestPageSetsTheItemsKind(t *testing.T) {
	body := `{"apiVersion": "apps/v1", "kind": "DeploymentList", "metadata": {}, "items": [
		{"metadata": {"name": "web", "generation": 1}, "spec": {"replicas": 2},
		 "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 0, "availableReplicas": 0}}]}`
	var p page
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatal(err)
	}
	objs := p.objects()
	if len(objs) != 1 {
		t.Fatalf("%d objects, want 1", len(objs))
	}
	if gvk := objs[0].GroupVersionKind(); gvk != (schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}) {
		t.Errorf("item kind %v, want apps/v1 Deployment", gvk)
	}
	if v, _ := Judge(objs[0]); v != Waiting {
		t.Errorf("a Deployment with no pod available: %s, want %s", v, Waiting)
	}
}

func TestListPath(t *testing.T) {
	for _, tc := range []struct {
		r    schema.GroupVersionResource
		ns   string
		want string
	}{
		{schema.GroupVersionResource{Version: "v1", Resource: "services"}, "shop", "/api/v1/namespaces/shop/services"},
		{schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, "shop", "/apis/apps/v1/namespaces/shop/deployments"},
		{schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}, "", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"},
		{schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}, "", "/api/v1/namespaces"},
	} {
		if got := listPath(tc.r, tc.ns); got != tc.want {
			t.Errorf("listPath(%v, %q) = %q, want %q", tc.r, tc.ns, got, tc.want)
		}
	}
}

// TestProtobufPageEqualsJSONPage decodes each of judgeCases of a kind
// client-go knows (with the managedFields and pod template a live object
// carries) from a page of its LIST in protobuf and in JSON, both encoded
// from the same typed list as the API server encodes them: the objects
// kstatus reads must be equal, and so must the verdicts.
func TestProtobufPageEqualsJSONPage(t *testing.T) {
	pb := protobuf.NewSerializer(scheme.Scheme, scheme.Scheme)
	js := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme, kjson.SerializerOptions{})
	tried := 0
	for _, tc := range judgeCases {
		u := obj(t, tc.y)
		gvk := u.GroupVersionKind()
		if !typed(gvk.GroupVersion().WithResource("any")) {
			continue
		}
		tried++
		u.SetManagedFields([]metav1.ManagedFieldsEntry{{Manager: "cronsync", Operation: metav1.ManagedFieldsOperationApply, APIVersion: gvk.GroupVersion().String()}})
		if _, ok := u.Object["spec"].(map[string]any); ok && gvk.Kind != "Service" {
			template := map[string]any{"metadata": map[string]any{"labels": map[string]any{"app": "x"}},
				"spec": map[string]any{"containers": []any{map[string]any{"name": "app", "image": "example.invalid/app:1"}}}}
			if err := unstructured.SetNestedMap(u.Object, template, "spec", "template"); err != nil {
				t.Fatal(err)
			}
		}
		item, err := scheme.Scheme.New(gvk)
		if err != nil {
			t.Fatal(err)
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, item); err != nil {
			t.Fatal(err)
		}
		// The API server leaves the kind out of a built-in list's items.
		item.GetObjectKind().SetGroupVersionKind(schema.GroupVersionKind{})
		list, err := scheme.Scheme.New(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err != nil {
			t.Fatal(err)
		}
		if err := meta.SetList(list, []runtime.Object{item}); err != nil {
			t.Fatal(err)
		}
		list.(metav1.ListInterface).SetContinue("next")
		var pages [2][]*unstructured.Unstructured
		for i, s := range []runtime.Serializer{pb, js} {
			body, err := runtime.Encode(scheme.Codecs.EncoderForVersion(s, gvk.GroupVersion()), list)
			if err != nil {
				t.Fatal(err)
			}
			if isPB := bytes.HasPrefix(body, protobufMagic); isPB != (i == 0) {
				t.Fatalf("%s: encoding %d is protobuf: %t", tc.name, i, isPB)
			}
			objs, cont, err := decodePage(body)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if len(objs) != 1 || cont != "next" {
				t.Fatalf("%s: %d objects, continue %q; want 1, \"next\"", tc.name, len(objs), cont)
			}
			pages[i] = objs
		}
		fromPB, fromJSON := pages[0][0], pages[1][0]
		if !reflect.DeepEqual(fromPB.Object, fromJSON.Object) {
			t.Errorf("%s: from protobuf\n%v\nfrom JSON\n%v", tc.name, fromPB.Object, fromJSON.Object)
		}
		v1, r1 := Judge(fromPB)
		v2, r2 := Judge(fromJSON)
		if v1 != v2 || r1 != r2 || v1 != tc.verdict {
			t.Errorf("%s: from protobuf %s %q, from JSON %s %q, want %s", tc.name, v1, r1, v2, r2, tc.verdict)
		}
		if _, ok := fromPB.Object["metadata"].(map[string]any)["managedFields"]; ok {
			t.Errorf("%s: managedFields decoded", tc.name)
		}
	}
	if tried < 5 {
		t.Fatalf("only %d cases of a kind client-go knows", tried)
	}
}

// TestWaitReadsProtobufAndItsErrors runs Wait against a server that answers
// as the API server does when asked for protobuf: a Deployment's LIST in
// protobuf, and a refused LIST as a protobuf Status. A custom resource's
// LIST asks for JSON alone, and a kind client-go does not know (in a
// version it does) is read again in JSON. The verdicts must come through,
// and a refusal as the server's own message, from protobuf and JSON alike.
func TestWaitReadsProtobufAndItsErrors(t *testing.T) {
	pb := protobuf.NewSerializer(scheme.Scheme, scheme.Scheme)
	encode := func(obj runtime.Object, gv schema.GroupVersion) []byte {
		b, err := runtime.Encode(scheme.Codecs.EncoderForVersion(pb, gv), obj)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var ready appsv1.Deployment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj(t, judgeCases[0].y).Object, &ready); err != nil {
		t.Fatal(err)
	}
	ready.Namespace = "shop"
	deployments := encode(&appsv1.DeploymentList{Items: []appsv1.Deployment{ready}}, appsv1.SchemeGroupVersion)
	forbidden := encode(&metav1.Status{Status: metav1.StatusFailure, Code: 403, Reason: metav1.StatusReasonForbidden,
		Message: `deployments.apps is forbidden: User "ci" cannot list resource "deployments" in the namespace "locked"`}, schema.GroupVersion{Version: "v1"})
	unknown := runtime.Unknown{TypeMeta: runtime.TypeMeta{APIVersion: "apps/v1", Kind: "GizmoList"}, Raw: []byte{}}
	gizmos, err := unknown.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	gizmosPB := append(slices.Clone(protobufMagic), gizmos...)
	accepts := map[string]string{}
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		accepts[r.URL.Path] = r.Header.Get("Accept")
		mu.Unlock()
		switch r.URL.Path {
		case "/apis/apps/v1/namespaces/shop/deployments":
			w.Header().Set("Content-Type", runtime.ContentTypeProtobuf)
			w.Write(deployments)
		case "/apis/apps/v1/namespaces/locked/deployments":
			w.Header().Set("Content-Type", runtime.ContentTypeProtobuf)
			w.WriteHeader(http.StatusForbidden)
			w.Write(forbidden)
		case "/apis/apps/v1/namespaces/shop/gizmos":
			// A kind this client-go does not know, in a version it does.
			if strings.Contains(r.Header.Get("Accept"), runtime.ContentTypeProtobuf) {
				w.Header().Set("Content-Type", runtime.ContentTypeProtobuf)
				w.Write(gizmosPB)
				return
			}
			w.Header().Set("Content-Type", runtime.ContentTypeJSON)
			io.WriteString(w, `{"apiVersion": "apps/v1", "kind": "GizmoList", "metadata": {}, "items": [{"metadata": {"name": "g", "generation": 1}, "status": {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]}}]}`)
		case "/apis/example.com/v1/namespaces/locked/widgets":
			w.Header().Set("Content-Type", runtime.ContentTypeJSON)
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Forbidden", "code": 403, "message": "widgets.example.com is forbidden: User \"ci\" cannot list resource \"widgets\" in the namespace \"locked\""}`)
		case "/apis/example.com/v1/namespaces/shop/widgets":
			w.Header().Set("Content-Type", runtime.ContentTypeJSON)
			io.WriteString(w, `{"apiVersion": "example.com/v1", "kind": "WidgetList", "metadata": {}, "items": [{"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "generation": 1}, "status": {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]}}]}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	client, err := RESTClientFor(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	deploy := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	widgets := schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}
	opts := DefaultOptions()
	opts.Timeout = 0

	gizmoRes := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "gizmos"}
	res, err := Wait(context.Background(), client, []Object{
		{Resource: deploy, Namespace: "shop", Name: "web", Ref: "deployment.apps/web -n shop"},
		{Resource: widgets, Namespace: "shop", Name: "w", Ref: "widget.example.com/w -n shop"},
		{Resource: gizmoRes, Namespace: "shop", Name: "g", Ref: "gizmo.apps/g -n shop"},
	}, opts)
	if err != nil || res.Ready != 3 {
		t.Fatalf("ready %d of 3, err %v", res.Ready, err)
	}
	if a := accepts["/apis/apps/v1/namespaces/shop/deployments"]; !strings.HasPrefix(a, runtime.ContentTypeProtobuf) {
		t.Errorf("the Deployments' LIST accepted %q, want protobuf first", a)
	}
	if a := accepts["/apis/example.com/v1/namespaces/shop/widgets"]; a != runtime.ContentTypeJSON {
		t.Errorf("the custom resources' LIST accepted %q, want JSON alone", a)
	}

	for _, tc := range []struct {
		o    Object
		want string
	}{
		{Object{Resource: deploy, Namespace: "locked", Name: "web", Ref: "deployment.apps/web -n locked", Source: "apps/web.yaml"},
			`deployment.apps/web -n locked (apps/web.yaml): reading its status: deployments.apps is forbidden: User "ci" cannot list resource "deployments" in the namespace "locked"`},
		{Object{Resource: widgets, Namespace: "locked", Name: "w", Ref: "widget.example.com/w -n locked", Source: "apps/w.yaml"},
			`widget.example.com/w -n locked (apps/w.yaml): reading its status: widgets.example.com is forbidden: User "ci" cannot list resource "widgets" in the namespace "locked"`},
	} {
		_, err = Wait(context.Background(), client, []Object{tc.o}, opts)
		if err == nil || err.Error() != tc.want || !apierrors.IsForbidden(err) {
			t.Errorf("error %v\nwant %s (Forbidden)", err, tc.want)
		}
	}
}
