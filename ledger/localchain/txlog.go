package localchain

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// The ledger directory's log (Config.Dir/txlog) is a sequence of records,
// each framed as
//
//	length  uint32 LE   bytes of payload (1 ..= maxRecordPayload)
//	crc     uint32 LE   CRC-32C (Castagnoli) of payload
//	payload             kind byte, then the kind's fields
//
// Kinds:
//
//	recHeader  magic[16] version u16 blockhashWindow u64 sha256(seed)[32]
//	           always the first record; says which chain the log belongs to
//	recTx      slot u64 headTimeUnixNano i64 outcomeDigest[32] raw tx bytes
//	           a landed transaction (sendTransaction or airdrop) exactly as
//	           it was executed; appended and fsynced before anyone is told
//	recHead    slot u64
//	           the head slot is at least this: written ahead of the slot
//	           clock (a reservation) and, exactly, on Close
//
// All integers are little endian.
const (
	recHeader byte = 1
	recTx     byte = 2
	recHead   byte = 3

	logVersion       uint16 = 1
	recordFrameBytes        = 8
	// maxRecordPayload bounds one record: a transaction is at most
	// packetDataSize bytes, so anything longer is corruption.
	maxRecordPayload = 1 + 8 + 8 + 32 + packetDataSize

	headerPayloadBytes = 1 + 16 + 2 + 8 + 32
	txFixedBytes       = 1 + 8 + 8 + 32
	headPayloadBytes   = 1 + 8
)

var logMagic = [16]byte{'n', 'o', 'd', 'e', '3', ' ', 'l', 'o', 'c', 'a', 'l', 'c', 'h', 'a', 'i', 'n'}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// logRecord is one decoded record; which fields mean something depends on
// kind.
type logRecord struct {
	kind byte

	// recHeader
	version  uint16
	window   uint64
	seedHash [32]byte

	// recTx and recHead
	slot uint64

	// recTx
	timeNanos int64
	digest    [32]byte
	raw       []byte
}

// appendRecord appends r, framed, to dst.
func appendRecord(dst []byte, r logRecord) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, recordFrameBytes)...)
	dst = append(dst, r.kind)
	switch r.kind {
	case recHeader:
		dst = append(dst, logMagic[:]...)
		dst = binary.LittleEndian.AppendUint16(dst, r.version)
		dst = binary.LittleEndian.AppendUint64(dst, r.window)
		dst = append(dst, r.seedHash[:]...)
	case recTx:
		dst = binary.LittleEndian.AppendUint64(dst, r.slot)
		dst = binary.LittleEndian.AppendUint64(dst, uint64(r.timeNanos))
		dst = append(dst, r.digest[:]...)
		dst = append(dst, r.raw...)
	case recHead:
		dst = binary.LittleEndian.AppendUint64(dst, r.slot)
	}
	payload := dst[start+recordFrameBytes:]
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(payload, castagnoli))
	return dst
}

// Ways a record can fail to decode. errRecordShort and errRecordChecksum
// are what a write cut short by a crash leaves at the end of the log.
var (
	errRecordShort    = errors.New("record extends past the end of the log")
	errRecordChecksum = errors.New("record checksum mismatch")
	errRecordLength   = errors.New("record length out of range")
)

// decodeRecord decodes the record at the start of b and returns it and
// its framed size. The returned raw aliases b.
func decodeRecord(b []byte) (logRecord, int, error) {
	if len(b) < recordFrameBytes {
		return logRecord{}, 0, errRecordShort
	}
	n := binary.LittleEndian.Uint32(b)
	if n == 0 || n > maxRecordPayload {
		return logRecord{}, 0, errRecordLength
	}
	size := recordFrameBytes + int(n)
	if len(b) < size {
		return logRecord{}, 0, errRecordShort
	}
	payload := b[recordFrameBytes:size]
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return logRecord{}, 0, errRecordChecksum
	}
	r, err := decodePayload(payload)
	if err != nil {
		return logRecord{}, 0, err
	}
	return r, size, nil
}

func decodePayload(p []byte) (logRecord, error) {
	r := logRecord{kind: p[0]}
	switch r.kind {
	case recHeader:
		if len(p) != headerPayloadBytes {
			return r, fmt.Errorf("header record of %d bytes, want %d", len(p), headerPayloadBytes)
		}
		if !bytes.Equal(p[1:17], logMagic[:]) {
			return r, errors.New("not a localchain log (bad magic)")
		}
		r.version = binary.LittleEndian.Uint16(p[17:])
		r.window = binary.LittleEndian.Uint64(p[19:])
		copy(r.seedHash[:], p[27:])
	case recTx:
		if len(p) <= txFixedBytes {
			return r, fmt.Errorf("transaction record of %d bytes, want more than %d", len(p), txFixedBytes)
		}
		r.slot = binary.LittleEndian.Uint64(p[1:])
		r.timeNanos = int64(binary.LittleEndian.Uint64(p[9:]))
		copy(r.digest[:], p[17:49])
		r.raw = p[49:]
	case recHead:
		if len(p) != headPayloadBytes {
			return r, fmt.Errorf("head record of %d bytes, want %d", len(p), headPayloadBytes)
		}
		r.slot = binary.LittleEndian.Uint64(p[1:])
	default:
		return r, fmt.Errorf("unknown record kind %d", r.kind)
	}
	return r, nil
}

// readLog decodes a whole log. A torn last record (a crash mid-write: the
// record runs past the end, or it is the last one and its checksum fails,
// or everything from it on is zeros) is not an error: readLog returns the
// records before it and valid, the length to truncate the log to. Any
// other damage is an error giving the offset.
func readLog(b []byte) (recs []logRecord, valid int, err error) {
	off := 0
	for off < len(b) {
		r, n, err := decodeRecord(b[off:])
		if err == nil {
			recs = append(recs, r)
			off += n
			continue
		}
		if tornTail(b[off:], err) {
			return recs, off, nil
		}
		return nil, 0, fmt.Errorf("offset %d: %w", off, err)
	}
	return recs, off, nil
}

// tornTail reports whether a record that failed to decode with err is what
// an interrupted append leaves behind.
func tornTail(rest []byte, err error) bool {
	switch {
	case errors.Is(err, errRecordShort):
		return true
	case errors.Is(err, errRecordChecksum):
		// The last record: its length was written but not all its bytes.
		return recordFrameBytes+int(binary.LittleEndian.Uint32(rest)) == len(rest) || allZero(rest)
	default:
		return allZero(rest) // the file grew but the data never arrived
	}
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}
