# A GGUF holding only a 259-token SentencePiece vocabulary (<unk> <s> </s> and the 256 byte
# tokens), for crates/engine/examples/synth_moe.rs: python spm_vocab.py OUT.gguf
import sys
from gguf import GGUFWriter, TokenType
w = GGUFWriter(sys.argv[1], 'llama')
tokens = ['<unk>', '<s>', '</s>'] + [f'<0x{i:02X}>' for i in range(256)]
types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL] + [TokenType.BYTE] * 256
w.add_tokenizer_model('llama')
w.add_token_list(tokens)
w.add_token_scores([0.0] * len(tokens))
w.add_token_types(types)
w.add_unk_token_id(0); w.add_bos_token_id(1); w.add_eos_token_id(2)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
