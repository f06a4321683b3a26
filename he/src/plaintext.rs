//! The plaintext reference: the integer program evaluated in the clear with exact integer
//! arithmetic. Encrypted evaluation must reproduce these scores bit for bit.

use crate::error::HeError;
use crate::program::Program;

/// Exact scores for one quantized input.
pub fn evaluate(program: &Program, input: &[i64]) -> Result<Vec<i64>, HeError> {
    program.check_input(input)?;
    let mut x: Vec<i128> = input.iter().map(|&v| i128::from(v)).collect();
    for layer in &program.layers {
        let z: Vec<i128> = layer
            .weights
            .iter()
            .zip(&layer.biases)
            .map(|(row, &b)| {
                i128::from(b)
                    + row
                        .iter()
                        .zip(&x)
                        .map(|(&w, &v)| i128::from(w) * v)
                        .sum::<i128>()
            })
            .collect();
        x = match &layer.activation {
            Some(act) => z
                .iter()
                .enumerate()
                .map(|(j, &z)| i128::from(act.apply(j, z)))
                .collect(),
            None => z,
        };
    }
    // Validation proved every score fits `output.bits`, far inside i64.
    Ok(x.into_iter().map(|v| v as i64).collect())
}
