package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/node3/node3"
)

// Payments is what the marketplace's wallet endpoints need: the
// coordinator's wallet, its chain and its payout engine.
type Payments interface {
	Wallet(ctx context.Context) (WalletInfo, error)
	Fund(ctx context.Context, amount node3.Lamports) (FundResponse, error)
	Reconcile(ctx context.Context) (ReconcileResponse, error)
}

// WalletInfo is GET /api/admin/wallet: the marketplace wallet and how its
// payouts stand.
type WalletInfo struct {
	Address         string         `json:"address"`
	RPCURL          string         `json:"rpc_url"`
	Balance         node3.Lamports `json:"balance_lamports"`
	BalanceSOL      json.Number    `json:"balance"`
	Pending         int64          `json:"payouts_pending"`
	PendingLamports node3.Lamports `json:"payouts_pending_lamports"`
	InFlight        int64          `json:"payouts_in_flight"`
	Failed          int64          `json:"payouts_failed"`
	Finalized       int64          `json:"payouts_finalized"`
	Held            int            `json:"payouts_held"`
	HeldReason      string         `json:"held_reason,omitempty"`
	LastError       string         `json:"last_error,omitempty"`
	TxsSent         uint64         `json:"txs_sent"`
	TxsFinalized    uint64         `json:"txs_finalized"`
	Fees            node3.Lamports `json:"fees_lamports"`
}

// FundRequest asks for an airdrop to the marketplace wallet (local
// chains and devnet only). Amount is SOL as a decimal.
type FundRequest struct {
	Amount json.RawMessage `json:"amount"`
}

// FundResponse reports an airdrop.
type FundResponse struct {
	Signature string         `json:"signature"`
	Amount    node3.Lamports `json:"amount_lamports"`
	Address   string         `json:"address"`
}

// ReconcileResponse is the ledger checked against the chain.
type ReconcileResponse struct {
	OK          bool     `json:"ok"`
	Summary     string   `json:"summary"`
	Differences []string `json:"differences"`
}

var errNoPayments = node3.Errorf(node3.CodeUnavailable, "payments are off on this coordinator (no SOLANA_RPC_URL)")

func (m *MarketplaceAPI) wallet(w http.ResponseWriter, r *http.Request) {
	if m.cfg.Payments == nil {
		writeError(w, m.log, r, errNoPayments)
		return
	}
	info, err := m.cfg.Payments.Wallet(r.Context())
	if err != nil {
		writeError(w, m.log, r, err)
		return
	}
	info.BalanceSOL = json.Number(info.Balance.SOL())
	info.RPCURL = node3.RedactURL(info.RPCURL) // never an API key in an answer
	writeJSON(w, http.StatusOK, info)
}

// MaxAirdrop bounds one fund-wallet request.
const MaxAirdrop = 1000 * node3.LamportsPerSOL

func (m *MarketplaceAPI) fund(w http.ResponseWriter, r *http.Request) {
	var req FundRequest
	if err := decode(w, r, maxBody, false, &req); err != nil {
		writeError(w, m.log, r, err)
		return
	}
	amount, err := parseSOLField("amount", req.Amount)
	if err == nil && (amount == 0 || amount > MaxAirdrop) {
		err = node3.Errorf(node3.CodeInvalid, "amount must be more than 0 and at most %s", MaxAirdrop)
	}
	if err != nil {
		writeError(w, m.log, r, err)
		return
	}
	if m.cfg.Payments == nil {
		writeError(w, m.log, r, errNoPayments)
		return
	}
	out, err := m.cfg.Payments.Fund(r.Context(), amount)
	if err != nil {
		writeError(w, m.log, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (m *MarketplaceAPI) reconcile(w http.ResponseWriter, r *http.Request) {
	if m.cfg.Payments == nil {
		writeError(w, m.log, r, errNoPayments)
		return
	}
	rep, err := m.cfg.Payments.Reconcile(r.Context())
	if err != nil {
		writeError(w, m.log, r, err)
		return
	}
	if rep.Differences == nil {
		rep.Differences = []string{}
	}
	writeJSON(w, http.StatusOK, rep)
}

// parseSOLField reads a SOL amount given as a JSON number or string.
func parseSOLField(name string, raw json.RawMessage) (node3.Lamports, error) {
	s := strings.TrimSpace(string(raw))
	if strings.HasPrefix(s, `"`) {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, node3.Errorf(node3.CodeInvalid, "%s must be a decimal number of SOL", name)
		}
	} else if s == "" || s == "null" || s[0] == '{' || s[0] == '[' || s == "true" || s == "false" {
		return 0, node3.Errorf(node3.CodeInvalid, "%s must be a decimal number of SOL", name)
	}
	v, err := node3.ParseSOL(s)
	if err != nil {
		return 0, node3.Errorf(node3.CodeInvalid, "%s: %s", name, node3.ErrorMessage(err))
	}
	return v, nil
}
