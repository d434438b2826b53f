"""A Hugging Face transformers script: the training loop is the Trainer's (`trainer.train()`).
florc records it unchanged, taking the Trainer's epochs as its main loop; the hindsight edits
add statements to a callback's `on_epoch_end`, the `compute_loss` override, `compute_metrics`
and after the train call.
"""
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

torch.manual_seed(0)
torch.set_num_threads(1)
VOCAB, LENGTH = 50, 8


class Tokens(torch.utils.data.Dataset):
    """Sequences of token ids; the label says whether token 7 occurs in them."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, VOCAB, (n, LENGTH), generator=g)
        self.labels = (self.ids == 7).any(dim=1).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


class LossTrainer(Trainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        loss = outputs.loss
        return (loss, outputs) if return_outputs else loss


class EpochReport(TrainerCallback):
    def on_epoch_end(self, args, state, control, **kwargs):
        self.steps = state.global_step

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        loss = [h["loss"] for h in state.log_history if "loss" in h][-1]
        epoch = round(state.epoch) - 1
        print(f"epoch {epoch} steps {self.steps} loss {loss:.6f} eval {metrics['eval_loss']:.6f}")


def compute_metrics(pred):
    accuracy = (pred.predictions.argmax(-1) == pred.label_ids).mean()
    return {"accuracy": float(accuracy)}


config = BertConfig(
    vocab_size=VOCAB,
    hidden_size=16,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=32,
    max_position_embeddings=LENGTH,
    num_labels=2,
)
model = BertForSequenceClassification(config)
args = TrainingArguments(
    output_dir="out",
    num_train_epochs=6,
    per_device_train_batch_size=16,
    per_device_eval_batch_size=16,
    learning_rate=5e-3,
    lr_scheduler_type="linear",
    eval_strategy="epoch",
    logging_strategy="epoch",
    save_strategy="no",
    report_to=[],
    disable_tqdm=True,
    use_cpu=True,
    seed=0,
)
trainer = LossTrainer(
    model=model,
    args=args,
    train_dataset=Tokens(96, seed=1),
    eval_dataset=Tokens(32, seed=2),
    compute_metrics=compute_metrics,
    callbacks=[EpochReport()],
)
trainer.remove_callback(PrinterCallback)  # the script prints its own lines (EpochReport)
result = trainer.train()
print(f"trained {trainer.state.global_step} steps")
