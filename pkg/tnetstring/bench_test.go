package tnetstring

import (
	"bytes"
	"fmt"
	"testing"
)

// benchSizes are the body sizes of the realistic zhttp request dict (§1.1).
var benchSizes = []int{0, 1 << 10, 64 << 10}

func BenchmarkEncode(b *testing.B) {
	for _, n := range benchSizes {
		d := condureRequestDict(bytes.Repeat([]byte{'x'}, n))
		enc := MustEncode(d)
		b.Run(fmt.Sprintf("body=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(enc)))
			buf := make([]byte, 0, len(enc)+64)
			for i := 0; i < b.N; i++ {
				var err error
				if buf, err = Encode(buf[:0], d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, n := range benchSizes {
		enc := MustEncode(condureRequestDict(bytes.Repeat([]byte{'x'}, n)))
		b.Run(fmt.Sprintf("body=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(enc)))
			for i := 0; i < b.N; i++ {
				if _, err := Decode(enc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
