package archive

// splitObject splits a JSON object written without whitespace between its
// members, {"k":v,...}, into its keys (without quotes) and raw values. It
// reports false for anything else; the caller then keeps the bytes whole.
func splitObject(d []byte, keys, vals [][]byte) ([][]byte, [][]byte, bool) {
	if len(d) < 2 || d[0] != '{' || d[len(d)-1] != '}' {
		return keys, vals, false
	}
	if len(d) == 2 {
		return keys, vals, true
	}
	i := 1
	for {
		if i >= len(d) || d[i] != '"' {
			return keys, vals, false
		}
		j := skipString(d, i)
		if j < 0 || j >= len(d) || d[j] != ':' {
			return keys, vals, false
		}
		k := skipValue(d, j+1)
		if k < 0 || k == j+1 {
			return keys, vals, false
		}
		keys = append(keys, d[i+1:j-1])
		vals = append(vals, d[j+1:k])
		if d[k] == '}' {
			return keys, vals, k == len(d)-1
		}
		i = k + 1
	}
}

// skipString returns the index after the JSON string starting at d[i], or
// -1.
func skipString(d []byte, i int) int {
	for j := i + 1; j < len(d); j++ {
		switch d[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// skipValue returns the index of the ',' or '}' that ends the JSON value
// starting at d[i], or -1.
func skipValue(d []byte, i int) int {
	depth := 0
	for j := i; j < len(d); j++ {
		switch d[j] {
		case '"':
			e := skipString(d, j)
			if e < 0 {
				return -1
			}
			j = e - 1
		case '{', '[':
			depth++
		case ']':
			depth--
			if depth < 0 {
				return -1
			}
		case '}':
			if depth == 0 {
				return j
			}
			depth--
		case ',':
			if depth == 0 {
				return j
			}
		}
	}
	return -1
}
