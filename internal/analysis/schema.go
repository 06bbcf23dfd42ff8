package analysis

import (
	"fmt"
	"slices"
	"strings"
)

// fields is the set of keys Runway accepts in a YAML object, each with the
// fields of its own value; a nil entry accepts any value (a leaf or a free
// map such as labels). Lists are checked element by element.
type fields map[string]fields

// templateSchema lists every AnalysisTemplate field Runway supports. It is
// checked before decoding so an unsupported Argo field (provider.web, dryRun,
// measurementRetention, args[].valueFrom...) is reported with its full path
// instead of being silently ignored.
func templateSchema() fields {
	return fields{
		"apiVersion": nil,
		"kind":       nil,
		"metadata": {
			"name":        nil,
			"namespace":   nil,
			"labels":      nil,
			"annotations": nil,
		},
		"spec": {
			"args": {
				"name":  nil,
				"value": nil,
			},
			"metrics": {
				"name":                  nil,
				"interval":              nil,
				"initialDelay":          nil,
				"count":                 nil,
				"successCondition":      nil,
				"failureCondition":      nil,
				"failureLimit":          nil,
				"inconclusiveLimit":     nil,
				"consecutiveErrorLimit": nil,
				"provider": {
					"prometheus": {
						"address": nil,
						"query":   nil,
					},
				},
			},
		},
	}
}

// checkFields walks v and reports the first key not in schema.
func checkFields(path string, v any, schema fields) error {
	if schema == nil {
		return nil
	}
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			sub, ok := schema[k]
			if !ok {
				return fmt.Errorf("unsupported field %s", joinPath(path, k))
			}
			if err := checkFields(joinPath(path, k), v[k], sub); err != nil {
				return err
			}
		}
	case []any:
		for i, e := range v {
			if err := checkFields(fmt.Sprintf("%s[%d]", path, i), e, schema); err != nil {
				return err
			}
		}
	case nil:
	default:
		return fmt.Errorf("%s: want an object, got %v", path, v)
	}
	return nil
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return strings.Join([]string{path, key}, ".")
}
