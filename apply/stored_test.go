package apply

import (
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestFoldStringData(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in, want map[string]any
	}{
		{"stringData is merged into data and kept",
			map[string]any{"apiVersion": "v1", "kind": "Secret", "stringData": map[string]any{"password": "s3cret"}},
			map[string]any{"apiVersion": "v1", "kind": "Secret", "data": map[string]any{"password": "czNjcmV0"}, "stringData": map[string]any{"password": "s3cret"}}},
		{"stringData wins over data for the same key, other keys stay",
			map[string]any{"apiVersion": "v1", "kind": "Secret", "data": map[string]any{"a": "YQ==", "b": "Yg=="}, "stringData": map[string]any{"b": "B", "c": ""}},
			map[string]any{"apiVersion": "v1", "kind": "Secret", "data": map[string]any{"a": "YQ==", "b": "Qg==", "c": ""}, "stringData": map[string]any{"b": "B", "c": ""}}},
		{"null stringData is left as it is",
			map[string]any{"apiVersion": "v1", "kind": "Secret", "stringData": nil},
			map[string]any{"apiVersion": "v1", "kind": "Secret", "stringData": nil}},
		{"a value that is not a string is left for the server to refuse",
			map[string]any{"apiVersion": "v1", "kind": "Secret", "stringData": map[string]any{"port": int64(5432)}},
			map[string]any{"apiVersion": "v1", "kind": "Secret", "stringData": map[string]any{"port": int64(5432)}}},
		{"data that is not a map is left alone",
			map[string]any{"apiVersion": "v1", "kind": "Secret", "data": "x", "stringData": map[string]any{"a": "b"}},
			map[string]any{"apiVersion": "v1", "kind": "Secret", "data": "x", "stringData": map[string]any{"a": "b"}}},
		{"other kinds keep a field of that name",
			map[string]any{"apiVersion": "example.com/v1", "kind": "Secret", "stringData": map[string]any{"a": "b"}},
			map[string]any{"apiVersion": "example.com/v1", "kind": "Secret", "stringData": map[string]any{"a": "b"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := &unstructured.Unstructured{Object: tc.in}
			foldStringData(u)
			if !reflect.DeepEqual(u.Object, tc.want) {
				t.Errorf("got %v, want %v", u.Object, tc.want)
			}
		})
	}
}
