//! The plaintext reference: the integer program evaluated in the clear with exact `i64`
//! arithmetic. Encrypted evaluation must reproduce these scores bit for bit.

use crate::error::HeError;
use crate::program::Program;

/// Exact integer class scores for one quantized input.
pub fn evaluate(program: &Program, input: &[u8]) -> Result<Vec<i64>, HeError> {
    program.check_input(input)?;
    Ok(program
        .weights
        .iter()
        .zip(&program.biases)
        .map(|(row, &bias)| {
            bias + row
                .iter()
                .zip(input)
                .map(|(&w, &q)| w * i64::from(q))
                .sum::<i64>()
        })
        .collect())
}
